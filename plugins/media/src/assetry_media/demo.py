"""``assetry demo``: the main job, end to end, on the embedded default (local disk + embedded LanceDB).

It generates sample images with their prompts and seeds embedded the way Stable Diffusion WebUI writes them,
ingests them (the prompts are extracted from the files, not passed in), searches by prompt and by colour
similarity, uses a few, and evicts the least recently used under a quota. The store it leaves behind is an
ordinary one to explore with the other commands.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

import assetry
from assetry.cli import human_size, print_table, short

MARKER = "# created by `assetry demo`"


def _prepare(directory: Path) -> Path:
    from assetry_media.embed import COLOR_EMBEDDING_DIM

    config = directory / "assetry.toml"
    if directory.exists():
        if not config.is_file() or MARKER not in config.read_text():
            raise click.ClickException(
                f"{directory.name}/ exists and was not made by `assetry demo`; choose another --dir"
            )
        shutil.rmtree(directory)  # a previous demo run: start afresh
    directory.mkdir(parents=True)
    config.write_text(
        f"{MARKER}; delete the directory when you are done.\n"
        '[store]\nroot = ".assetry"\n\n'
        "# The demo embeds images as colour histograms; real pipelines use model embeddings (e.g. 1536).\n"
        f'[vectors]\ndimension = {COLOR_EMBEDDING_DIM}\nmetric = "cosine"\n'
    )
    return config


def _heading(text: str) -> None:
    click.echo("")
    click.secho(text, bold=True)


@click.command()
@click.option(
    "--dir",
    "directory",
    default="assetry-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to create the demo store (re-created on each run).",
)
@click.option(
    "--count", default=24, show_default=True, type=click.IntRange(6, 500), help="Images to generate."
)
@click.option("--seed", default=0, show_default=True, help="Seed for the generated images.")
def demo(directory: str, count: int, seed: int) -> None:
    """Generate sample images, ingest, search, use and evict them: assetry end to end."""
    # Imported here: every command line call registers this command, and Pillow takes ~40 ms to import.
    from assetry_media.embed import color_embedding
    from assetry_media.samples import make_sample_images

    root = Path(directory).resolve()
    try:
        config = _prepare(root)
        samples = make_sample_images(root / "generated", count, seed=seed)
    except OSError as exc:  # a directory that cannot be written: one line, as every command says it
        raise click.ClickException(f"{exc.filename or root}: {exc.strerror or exc}") from None
    click.echo(
        f"Generated {len(samples)} PNG images in {root.name}/generated/ "
        "(prompt, seed and model embedded as Stable Diffusion WebUI 'parameters')."
    )

    with assetry.open(config) as store:
        _heading("1. Ingest")
        items = []
        for sample in samples:
            with open(sample.path, "rb") as f:
                vector = color_embedding(f)
            items.append((sample.path, {"embedding": vector, "tags": list(sample.tags), "project": "demo"}))
        with click.progressbar(length=len(items), label="Adding", show_pos=True) as bar:
            report = store.add_many(items, created_by="assetry-demo", progress=bar.update)
        usage = store.stats().usage
        click.echo(
            f"{report.added} assets cataloged; {report.blobs_written} blobs stored "
            f"({len(items) - report.blobs_written} byte-identical images deduplicated), "
            f"{human_size(usage.stored_bytes)} on disk."
        )
        first = report.assets[0]
        click.echo(
            f"Extracted from the first file: prompt={short(first.provenance.prompt, 50)!r}, "
            f"seed={first.provenance.seed}, model={first.provenance.model}, "
            f"{first.width}x{first.height}, {first.media_type}."
        )

        _heading("2. Search by prompt: 'sunset mountains'")
        hits = store.search("sunset mountains", limit=5)
        print_table(
            [
                [f"{h.score:.3f}", h.asset.id[:12], h.asset.label, short(h.asset.provenance.prompt, 50)]
                for h in hits
            ],
            ("SCORE", "ID", "LABEL", "PROMPT"),
        )

        _heading("3. Similar colours to an ocean image (vector search)")
        ocean = next((a for a in report.assets if "ocean" in (a.provenance.prompt or "")), first)
        similar = store.similar(ocean.id, limit=5)
        print_table(
            [
                [f"{h.distance or 0:.3f}", h.asset.id[:12], short(h.asset.provenance.prompt, 50)]
                for h in similar
            ],
            ("DISTANCE", "ID", "PROMPT"),
        )

        _heading("4. Use some assets (usage is recorded in a buffer and folded in batches)")
        used = [h.asset for h in hits[:3]] + [ocean]
        for asset in used:
            store.read(asset.id, actor="demo-pipeline")
        store.read(used[0].id, actor="demo-pipeline")
        keep = store.pin(report.assets[-1].id)
        store.flush()
        for asset in used[:2]:
            fresh = store.get(asset.id)
            click.echo(
                f"{fresh.id[:12]} {short(fresh.label, 28):28} read {fresh.access_count}x, "
                f"last used {fresh.last_used:%H:%M:%S}"
            )
        click.echo(f"Pinned {keep.id[:12]} ({keep.label}): never evicted.")

        _heading("5. Quota GC: evict the least recently used down to a quota")
        # Half the store, but never less than the used and pinned assets take (each blob once): below
        # that, GC would evict the assets it just used, however recent, and the promise below would fail.
        protected = {a.digest: a.size for a in [*used, keep] if a.digest is not None}
        quota = max(usage.stored_bytes // 2, sum(protected.values()))
        if quota >= usage.stored_bytes:
            click.echo(
                "Every stored image is used or pinned, so nothing may go (a larger --count leaves some)."
            )
        plan = store.gc(quota, dry_run=True)
        click.echo(f"Dry run: would evict {len(plan.evicted)} assets, freeing {human_size(plan.freed)}.")
        result = store.gc(quota)
        survivors = {a.id for a in store.iter()}
        click.echo(
            f"Evicted {len(result.evicted)} assets: {human_size(result.before)} -> "
            f"{human_size(result.after)} (quota {human_size(quota)}). "
            f"Recently used and pinned assets kept: "
            f"{sum(a.id in survivors for a in [*used, keep])}/{len(used) + 1}."
        )
        shown = ocean if ocean.id in survivors else keep  # the hint below must name an asset still there

        _heading("Summary")
        final = store.stats().usage
        click.echo(
            f"{final.assets} assets, {final.blobs} blobs, {human_size(final.stored_bytes)} stored "
            f"in {root.name}/.assetry/."
        )
    click.echo("")
    click.echo(
        f"Explore it:  cd {directory}  then  assetry ls,  assetry search ocean,  "
        f"assetry show {shown.id[:8]},  assetry stats"
    )
