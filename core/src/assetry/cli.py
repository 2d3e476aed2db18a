"""The ``assetry`` command line: the Python API, nothing more, for people and scripts (``--json``)."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from assetry import _convert
from assetry.config import CONFIG_FILENAME, load_config
from assetry.daemon import DEFAULT_IDLE_SECONDS
from assetry.errors import AssetryError, ConfigError, SourceError, ValidationError
from assetry.model import ORDERS, Asset, Hit, Kind, check_json
from assetry.plugins import config_claims, get_plugin_manager
from assetry.redact import redact_url
from assetry.store import Store, iter_files

log = logging.getLogger(__name__)


# -- shared plumbing ----------------------------------------------------------------------------------------


class Context:
    """What every command gets: global options, and the store, opened on first use and closed at exit."""

    def __init__(self, config: str | None, root: str | None, tenant: str | None) -> None:
        self.config_path = config
        self.root = root
        self.tenant = tenant
        self._store: Store | None = None

    def store(self, *, create: bool = False) -> Store:
        """The store, opened on first use. Only commands that add create one: anything else pointed at
        a root with no store there (a typo, say) fails with `StoreNotFound` and leaves nothing behind."""
        if self._store is None:
            from assetry.store import open as open_store

            self._store = open_store(self.config_path, root=self.root, tenant=self.tenant, create=create)
        return self._store

    def own_directories(self) -> frozenset[tuple[int, int]]:
        """The store's local directories, known from the configuration before the store is opened (a
        command checks its arguments before it creates anything)."""
        from assetry.store import own_directories

        overrides = {"store": {"root": self.root}} if self.root else {}
        return own_directories(load_config(self.config_path, overrides=overrides))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


pass_context = click.make_pass_decorator(Context)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def asset_json(asset: Asset, *, embedding: bool = False) -> dict[str, Any]:
    """An asset for ``--json``: ``has_embedding`` always (scripts can rely on the key), the vector itself
    only when asked for (``embedding``: 1536 numbers per asset would swamp a listing)."""
    data: dict[str, Any] = _convert.unstructure(asset)
    vector = data.pop("embedding", None)
    data["has_embedding"] = asset.embedding is not None
    if embedding:
        data["embedding"] = vector
    return data


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def ago(when: datetime | None) -> str:
    if when is None:
        return "never"
    seconds = (datetime.now(UTC) - when).total_seconds()
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{int(seconds // span)}{unit} ago"
    return "just now"


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n"}


def printable(text: str) -> str:
    """Metadata as the terminal should show it: control characters (escape sequences that set a
    window title or rewrite the screen, a carriage return that hides what precedes it) written as
    ``\\x1b``. Prompts and tags come from whoever wrote to the store, which may be another user."""
    return text.translate(_CONTROL)


def short(text: str | None, width: int) -> str:
    if not text:
        return ""
    text = printable(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def asset_rows(assets: Sequence[Asset]) -> list[list[str]]:
    return [
        [a.id[:12], a.kind.value, human_size(a.size), short(a.label, 32), short(a.provenance.prompt, 48)]
        for a in assets
    ]


ASSET_HEADERS = ("ID", "KIND", "SIZE", "LABEL", "PROMPT")


def parse_meta(pairs: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs; values that parse as JSON (numbers, true, lists) keep their type. Errors are on
    ``meta`` (``--meta``), with the key: the store's would name its field, ``extra``, and no key."""
    meta: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--meta")
        if key in meta:  # the last would win, silently
            raise ValidationError("meta", f"key {key!r} is given twice")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        try:
            check_json(value, key)  # NaN, Infinity, 1e999: Python's JSON reads them, no store can keep them
        except ValidationError as exc:
            raise ValidationError("meta", f"{pair!r}: {exc.reason}") from None
        meta[key] = value
    return meta


def expand_paths(
    patterns: Sequence[str], recursive: bool, skip: frozenset[tuple[int, int]] = frozenset()
) -> list[Path]:
    """Files named by the arguments: files, directories (walked) and glob patterns (quoted by the user).
    Directories in ``skip`` (the store's own) are not walked."""
    files: list[Path] = []
    for pattern in patterns:
        if not pattern.strip():  # an unset variable, say: not the working directory Path("") makes of it
            raise click.BadParameter("an empty path", param_hint="PATHS")
        path = Path(pattern)
        if path.exists() or not glob.has_magic(pattern):
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            if not matches:
                raise SourceError(pattern, "the pattern matches no file")
        for match in matches:
            if match.is_dir():
                files.extend(iter_files(match, recursive, skip))
            else:
                files.append(match)
    return files


def read_json_file(path: str, duplicates: list[str] | None = None) -> Any:
    """The JSON in a file given to an option (``--embedding-file``, ``--vector-file``); the keys that
    appear twice in an object are appended to ``duplicates``."""
    name = Path(path).name
    try:
        # Only a regular file: a FIFO would block the open (or the read) forever, a device never end.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise SourceError(name, "is not a regular file")
        # O_NONBLOCK: should a FIFO replace the file between the two calls, the open cannot hang either.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SourceError(name, "is not a regular file")
            text = f.read()
    except FileNotFoundError:
        raise SourceError(name, "no such file") from None
    except OSError as exc:
        raise SourceError(name, f"cannot be read: {exc.strerror or exc}") from None

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj and duplicates is not None:
                duplicates.append(key)
            obj[key] = value
        return obj

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except ValueError as exc:
        raise SourceError(name, f"not a readable JSON file: {exc}") from None


def read_embedding_file(path: str, files: Sequence[Path]) -> dict[Path, Any]:
    """``--embedding-file``: a JSON list (one file added) or an object mapping the files added to lists."""
    name = Path(path).name
    duplicates: list[str] = []
    data = read_json_file(path, duplicates)
    if isinstance(data, list):
        if len(files) != 1:
            raise SourceError(name, "a single vector needs exactly one file; use an object {file: vector}")
        return {files[0]: data}
    if not isinstance(data, dict):
        raise SourceError(
            name, f"expected a JSON list of numbers or an object of them, got {_json_type(data)}"
        )
    if duplicates:  # json.loads keeps the last one, silently
        raise SourceError(name, f"key {duplicates[0]!r} is given twice")
    # The files added, by real path: one file may be added under two names (`d` and `d/x.png`).
    by_path: dict[str, list[Path]] = {}
    for f in files:
        by_path.setdefault(os.path.realpath(f), []).append(f)
    by_name: dict[str, list[str]] = {}
    for real, spelt in by_path.items():
        for file_name in {f.name for f in spelt}:
            by_name.setdefault(file_name, []).append(real)
    claimed: dict[str, str] = {}
    result: dict[Path, Any] = {}
    for key, vector in data.items():
        real = os.path.realpath(key) if key else ""
        if real not in by_path:
            # By file name (keys written relative to another directory, or bare names), only when one file
            # added has that name: two `same.bin` in two directories must not share, or swap, a vector.
            # Not when the key is the path of another file: that file was not added.
            matches = (
                [] if Path(key).name != key and os.path.lexists(key) else by_name.get(Path(key).name, [])
            )
            if not matches:
                raise SourceError(name, f"key {key!r} names none of the files added")
            if len(matches) > 1:
                shown = ", ".join(str(by_path[m][0]) for m in matches[:3])
                raise SourceError(name, f"key {key!r} matches several files added ({shown}); give its path")
            real = matches[0]
        if real in claimed:
            both = str(by_path[real][0])
            raise SourceError(name, f"keys {claimed[real]!r} and {key!r} both name {both!r}")
        claimed[real] = key
        for f in by_path[real]:
            result[f] = vector
    return result


def read_vector_file(path: str) -> Any:
    """``search --vector-file``: one JSON list of numbers (the store checks the numbers)."""
    data = read_json_file(path)
    if not isinstance(data, list):
        raise SourceError(Path(path).name, f"expected a JSON list of numbers, got {_json_type(data)}")
    return data


@contextlib.contextmanager
def blame_file(path: str | None, field: str) -> Iterator[None]:
    """Errors on ``field`` (``vector``, ``embedding[2]``) name the file its value was read from: the
    user typed no option of that name."""
    try:
        yield
    except ValidationError as exc:
        if path is None or not exc.field or exc.field.partition("[")[0] != field:
            raise
        raise SourceError(Path(path).name, str(exc)) from None


def _json_type(data: Any) -> str:
    names = {dict: "an object", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if data is None else names.get(type(data), type(data).__name__)


def filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The filters shared by ls, search and gc reports."""
    options = [
        click.option(
            "--kind",
            "kinds",
            multiple=True,
            type=click.Choice([k.value for k in Kind]),
            help="Asset kind (repeatable: any of).",
        ),
        click.option("--tag", "tags", multiple=True, help="Has this tag (repeatable: all of)."),
        click.option("--any-tag", "any_tags", multiple=True, help="Has any of these tags (repeatable)."),
        click.option("--project", help="In this project."),
        click.option("--mime", "media_type", help="Media type prefix, e.g. image/ or image/png."),
        click.option("--model", help="Generated by this model."),
        click.option("--agent", "agent_id", help="Produced by this agent."),
        click.option("--conversation", "conversation_id", help="Linked to this conversation."),
        click.option("--task", "task_id", help="Produced by this task."),
        click.option("--since", "created_after", type=click.DateTime(), help="Created at or after."),
        click.option("--before", "created_before", type=click.DateTime(), help="Created before."),
        click.option("--min-size", help="At least this size (e.g. 1MB)."),
        click.option("--max-size", help="At most this size."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


_TEXT_FILTERS = ("project", "media_type", "model", "agent_id", "conversation_id", "task_id")
"""Filter options taking one string each (``--tag`` and ``--any-tag`` take several)."""


def collect_filters(kw: dict[str, Any]) -> dict[str, Any]:
    # An empty value (`--tag ""`, a variable that is not set) would quietly match nothing, or with --mime
    # everything: refused, as `add --tag ""` is. The field is the option's name: errors name the option.
    for key in ("tags", "any_tags", *_TEXT_FILTERS):
        value = kw.get(key)
        if value == "" or (isinstance(value, tuple) and "" in value):
            raise ValidationError(key, "must not be empty")
    filters: dict[str, Any] = {}
    for key in ("kinds", "tags", "any_tags"):
        if kw.get(key):
            filters["kind" if key == "kinds" else key] = list(kw.pop(key))
        else:
            kw.pop(key, None)
    for key in (*_TEXT_FILTERS, "min_size", "max_size"):
        value = kw.pop(key, None)
        if value is not None:
            filters[key] = value
    for key in ("created_after", "created_before"):
        value = kw.pop(key, None)
        if value is not None:
            filters[key] = value if value.tzinfo else value.replace(tzinfo=UTC)
    return filters


# -- the group ----------------------------------------------------------------------------------------------


class OutputError(Exception):
    """Standard output could not be written (a full disk, a quota): the command's output, not its work,
    failed, and the user is told so in one line."""

    def __init__(self, error: OSError) -> None:
        self.error = error
        super().__init__(f"standard output: {error.strerror or error}")


class GuardedOutput:
    """``sys.stdout`` (or its ``buffer``) whose write errors are `OutputError`: an OSError that reaches
    the group could come from anywhere, this one comes from the output. A closed pipe (EPIPE) stays an
    OSError, which click ends quietly, as Unix tools end when a reader such as ``head`` has gone."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    @property
    def buffer(self) -> GuardedOutput:
        return GuardedOutput(self._stream.buffer)

    def write(self, data: Any) -> Any:
        return self._guard(self._stream.write, data)

    def writelines(self, lines: Any) -> Any:
        return self._guard(self._stream.writelines, lines)

    def flush(self) -> Any:
        return self._guard(self._stream.flush)

    @staticmethod
    def _guard(call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            raise OutputError(exc) from None


def _drop_output() -> None:
    """Point descriptor 1 at the null device: what is still buffered for standard output is then
    written there at exit, instead of failing again in a second report ("Exception ignored ...")."""
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ else 1
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):  # no descriptor (captured output in tests)
        return
    os.dup2(devnull, fd)
    os.close(devnull)


class AssetryGroup(click.Group):
    """Turns assetry's own errors into one clear line and exit status 1, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        stdout = sys.stdout
        if stdout is not None:
            sys.stdout = GuardedOutput(stdout)
        try:
            return super().invoke(ctx)
        except AssetryError as exc:
            raise click.ClickException(redact_url(self._as_typed(ctx, exc))) from None
        except OutputError as exc:
            if stdout is sys.__stdout__:
                _drop_output()
            raise click.ClickException(str(exc)) from None
        finally:
            sys.stdout = stdout

    def _as_typed(self, ctx: click.Context, exc: AssetryError) -> str:
        """The error, naming the option the user typed (``--min-size``) where the API's field name
        (``min_size``) is that of an option of this command or of the group."""
        if not isinstance(exc, ValidationError) or not exc.field:
            return str(exc)
        if isinstance(exc, SourceError) or (isinstance(exc, ConfigError) and exc.source):
            return str(exc)  # a file's error, or a configuration key's: those name what set them
        command = self.get_command(ctx, ctx.invoked_subcommand or "")
        for param in [*(command.params if command else []), *self.params]:
            if isinstance(param, click.Option) and param.name == exc.field:
                return f"{max(param.opts, key=len)}: {exc.reason}"
        return str(exc)


@click.group(cls=AssetryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    "config",
    type=click.Path(dir_okay=False),
    envvar="ASSETRY_CONFIG",
    help=f"Configuration file (default: {CONFIG_FILENAME} here or in a parent directory).",
)
@click.option("--root", help="Store location (directory or URL); overrides [store] root.")
@click.option("--tenant", help="Tenant to work in (default: [store] tenant).")
@click.option("-v", "--verbose", count=True, help="Log what happens (-v info, -vv debug).")
@click.version_option(package_name="assetry-core", prog_name="assetry")
@click.pass_context
def cli(ctx: click.Context, config: str | None, root: str | None, tenant: str | None, verbose: int) -> None:
    """assetry: store, index, find and evict the files AI systems generate and use."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    state = Context(config, root, tenant)
    ctx.obj = state
    ctx.call_on_close(state.close)


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--dimension", type=int, default=1536, show_default=True, help="Embedding length.")
@click.option("--metric", type=click.Choice(["cosine", "l2", "dot"]), default="cosine", show_default=True)
def init(directory: str, dimension: int, metric: str) -> None:
    """Create assetry.toml and an empty store (in .assetry/) in DIRECTORY."""
    target = Path(directory)
    config_file = target / CONFIG_FILENAME
    if config_file.exists():
        raise click.ClickException(f"{CONFIG_FILENAME} already exists in {target.name or 'this directory'}")
    if dimension <= 0:
        raise click.BadParameter("must be > 0", param_hint="--dimension")
    from assetry.store import open as open_store

    # A failed init leaves nothing that a second try would trip over: not the file, not the directories.
    created = [p for p in [target.absolute(), *target.absolute().parents] if not p.exists()]
    wrote = False
    try:
        target.mkdir(parents=True, exist_ok=True)
        with config_file.open("x") as f:  # "x": never through a symlink to a file somewhere else
            wrote = True
            f.write(
                "# assetry configuration: see docs/config.md\n"
                '[store]\nroot = ".assetry"\n\n'
                f'[vectors]\ndimension = {dimension}\nmetric = "{metric}"\n'
            )
        with open_store(config_file) as store:
            root = store.config.root
    except BaseException as exc:
        with contextlib.suppress(OSError):
            if wrote:
                config_file.unlink()
            for made in created:  # deepest first
                made.rmdir()
        if isinstance(exc, OSError):
            raise click.ClickException(f"{exc.filename or config_file}: {exc.strerror or exc}") from None
        raise
    # (The environment may move the store elsewhere: say where it is.)
    shown = ".assetry/" if Path(root) == (target / ".assetry").resolve() else root
    click.echo(f"Initialised an assetry store in {shown} with {CONFIG_FILENAME}.")


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--label", help="Display name (default: the file name).")
@click.option(
    "--kind", type=click.Choice([k.value for k in Kind]), help="Asset kind (default: from the type)."
)
@click.option("--tag", "tags", multiple=True, help="Tag (repeatable).")
@click.option("--project", help="Project or collection.")
@click.option("--prompt", help="Generation prompt.")
@click.option("--negative-prompt", help="Negative prompt.")
@click.option("--model", help="Model that generated it.")
@click.option("--seed", type=int, help="Generation seed.")
@click.option("--meta", "meta", multiple=True, help="Extra metadata key=value (repeatable; JSON values).")
@click.option("--created-by", help="Who created it.")
@click.option("--agent", "agent_id", help="Agent that produced it.")
@click.option("--conversation", "conversation_id", help="Conversation it belongs to.")
@click.option("--task", "task_id", help="Task that produced it.")
@click.option(
    "--embedding-file",
    type=click.Path(dir_okay=False),
    help="JSON vector (one file) or {file path or name: vector} object.",
)
@click.option("--pin", is_flag=True, help="Protect from quota eviction.")
@click.option(
    "--on-duplicate",
    type=click.Choice(["skip", "keep"]),
    default="skip",
    show_default=True,
    help="Same content, label and project already cataloged: reuse it, or add another asset.",
)
@click.option("--no-recursive", is_flag=True, help="Do not descend into subdirectories.")
@click.option("--allow-empty", is_flag=True, help="Store empty files (refused by default).")
@json_option
@pass_context
def add(
    state: Context,
    /,
    paths: tuple[str, ...],
    no_recursive: bool,
    embedding_file: str | None,
    meta: tuple[str, ...],
    on_duplicate: str,
    pin: bool,
    allow_empty: bool,
    as_json: bool,
    **fields: Any,
) -> None:
    """Add files, directories or glob patterns to the store."""
    files = expand_paths(paths, recursive=not no_recursive, skip=state.own_directories())
    if not files:
        raise click.ClickException("no files to add")
    common = {k: (list(v) if isinstance(v, tuple) else v) for k, v in fields.items() if v not in (None, ())}
    if meta:
        common["extra"] = parse_meta(meta)
    if pin:
        common["pinned"] = True
    vectors = read_embedding_file(embedding_file, files) if embedding_file else {}
    items = [(f, {"embedding": vectors[f]} if f in vectors else {}) for f in files]
    store = state.store(create=True)
    show_bar = len(files) > 1 and not as_json
    with (
        click.progressbar(length=len(files), label="Adding", file=sys.stderr, hidden=not show_bar) as bar,
        blame_file(embedding_file, "embedding"),
    ):
        report = store.add_many(
            items,
            on_duplicate=on_duplicate,  # type: ignore[arg-type]
            allow_empty=allow_empty,
            progress=bar.update,
            **common,  # type: ignore[arg-type]
        )
    if as_json:
        emit_json(
            {
                "added": report.added,
                "duplicates": report.duplicates,
                "blobs_written": report.blobs_written,
                "bytes_written": report.bytes_written,
                "files_unread": report.files_unread,
                "assets": [asset_json(a) for a in report.assets],
            }
        )
        return
    if len(report.assets) == 1:
        asset = report.assets[0]
        verb = "Added" if report.added else "Already present:"
        click.echo(f"{verb} {asset.id}  {asset.label}  ({asset.kind.value}, {human_size(asset.size)})")
    else:
        # Files the digest cache knew were not read: say so, or a fast re-add looks like a skipped one.
        unread = f"; {report.files_unread} files known unchanged, not read" if report.files_unread else ""
        click.echo(
            f"Added {report.added} assets ({report.duplicates} already present); "
            f"{report.blobs_written} new blobs, {human_size(report.bytes_written)} written{unread}."
        )


@cli.command(name="ls")
@filter_options
@click.option("--order", type=click.Choice(ORDERS), default="-created_at", show_default=True)
@click.option("--limit", "-n", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@click.option(
    "--after",
    metavar="CURSOR",
    help="Continue after a page: its next_cursor (from --json). Fast however deep, unlike --offset.",
)
@json_option
@pass_context
def ls(
    state: Context, /, order: str, limit: int, offset: int, after: str | None, as_json: bool, **kw: Any
) -> None:
    """List assets, newest first, with filters."""
    page = state.store().find(order=order, limit=limit, offset=offset, after=after, **collect_filters(kw))
    if as_json:
        emit_json(
            {
                "total": page.total,
                "offset": page.offset,
                "next_offset": page.next_offset,
                "next_cursor": page.next_cursor,
                "items": [asset_json(a) for a in page.items],
            }
        )
        return
    print_table(asset_rows(page.items), ASSET_HEADERS)
    shown = f"{page.offset + 1}-{page.offset + len(page.items)}" if page.items else "0"
    if page.next_offset is None:
        more = ""
    elif after is not None:  # paging by cursor: go on that way
        more = f"; next page: --after {page.next_cursor}"
    else:
        more = f"; next page: --offset {page.next_offset}"
    click.echo(f"({shown} of {page.total}{more})", err=True)


@cli.command()
@click.argument("asset_id")
@click.option(
    "--embedding", is_flag=True, help="Also print the embedding vector (a JSON list), not its length only."
)
@json_option
@pass_context
def show(state: Context, /, asset_id: str, embedding: bool, as_json: bool) -> None:
    """Show everything known about one asset (an id or a unique prefix of one)."""
    asset = state.store().resolve(asset_id)
    if as_json:
        emit_json(asset_json(asset, embedding=embedding))
        return
    rows: list[tuple[str, Any]] = [
        ("id", asset.id),
        ("label", asset.label),
        ("kind", asset.kind.value),
        ("media type", asset.media_type),
        ("size", f"{human_size(asset.size)} ({asset.size} bytes)"),
        ("digest", asset.digest),
        ("status", asset.status.value),
        ("created", asset.created_at.isoformat(timespec="seconds")),
        ("created by", asset.created_by),
        ("tenant", asset.tenant),
        ("project", asset.project),
        ("tags", ", ".join(asset.tags)),
        ("pinned", "yes" if asset.pinned else None),
        ("dimensions", f"{asset.width}x{asset.height}" if asset.width and asset.height else None),
        ("duration", f"{asset.duration:.2f} s" if asset.duration else None),
        ("model", asset.provenance.model),
        ("prompt", asset.provenance.prompt),
        ("negative prompt", asset.provenance.negative_prompt),
        ("seed", asset.provenance.seed),
        (
            "parameters",
            json.dumps(dict(asset.provenance.parameters)) if asset.provenance.parameters else None,
        ),
        ("agent", asset.links.agent_id),
        ("conversation", asset.links.conversation_id),
        ("message", asset.links.message_id),
        ("tool call", asset.links.tool_call_id),
        ("task", asset.links.task_id),
        ("parents", ", ".join(asset.links.parent_ids)),
        ("references", ", ".join(asset.links.reference_ids)),
        ("extra", json.dumps(dict(asset.extra)) if asset.extra else None),
        ("embedding", _embedding_text(asset.embedding, embedding)),
        ("last used", ago(asset.last_used)),
        ("accesses", asset.access_count),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        if value not in (None, ""):
            click.echo(f"{key.rjust(width)}  {printable(str(value))}")


def _embedding_text(vector: Sequence[float] | None, full: bool) -> str | None:
    if vector is None:
        return None
    # --embedding: as JSON, so that it can be copied into a --vector-file.
    return json.dumps(list(vector)) if full else f"{len(vector)} dimensions"


@cli.command()
@click.argument("asset_id")
@pass_context
def cat(state: Context, /, asset_id: str) -> None:
    """Write an asset's content to standard output."""
    store = state.store()
    out = sys.stdout.buffer
    asset = store.resolve(asset_id)
    reader = store.open(asset, action="read")
    with reader:
        while chunk := reader.read(1024 * 1024):
            out.write(chunk)
    out.flush()


@cli.command()
@click.argument("asset_ids", nargs=-1, required=True)
@click.option("--to", "directory", required=True, type=click.Path(file_okay=False), help="Target directory.")
@click.option(
    "--manifest",
    default="manifest.json",
    show_default=True,
    help="Manifest file name (id -> absolute path); '' for none.",
)
@click.option("--overwrite", is_flag=True, help="Replace files that already exist.")
@json_option
@pass_context
def export(
    state: Context, asset_ids: tuple[str, ...], directory: str, manifest: str, overwrite: bool, as_json: bool
) -> None:
    """Write assets as real files (named by label) into a directory, with a manifest."""
    result = state.store().export(list(asset_ids), directory, manifest=manifest or None, overwrite=overwrite)
    if as_json:
        emit_json({k: str(v) for k, v in result.items()})
    else:
        click.echo(
            f"Exported {len(result)} assets to {Path(directory).name or directory}/"
            + (f" (manifest: {manifest})" if manifest else "")
        )


@cli.command()
@click.argument("text", required=False)
@click.option("--similar-to", help="Find assets whose embedding is nearest to this asset's.")
@click.option("--vector-file", type=click.Path(dir_okay=False), help="JSON vector to search with.")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=10, show_default=True)
@filter_options
@json_option
@pass_context
def search(
    state: Context,
    /,
    text: str | None,
    similar_to: str | None,
    vector_file: str | None,
    limit: int,
    as_json: bool,
    **kw: Any,
) -> None:
    """Search by prompt/label/tag text, by similarity, or both."""
    store = state.store()
    filters = collect_filters(kw)
    if similar_to and (text or vector_file):
        raise click.UsageError("--similar-to cannot be combined with TEXT or --vector-file")
    hits: list[Hit]
    if similar_to:
        hits = store.similar(similar_to, limit=limit, **filters)
    else:
        vector = read_vector_file(vector_file) if vector_file else None
        if not text and vector is None:
            raise click.UsageError("give TEXT, --similar-to or --vector-file")
        with blame_file(vector_file, "vector"):
            hits = store.search(text, vector=vector, limit=limit, **filters)
    if as_json:
        emit_json([{"score": h.score, "distance": h.distance, "asset": asset_json(h.asset)} for h in hits])
        return
    rows = [
        [f"{h.score:.3f}", *row] for h, row in zip(hits, asset_rows([h.asset for h in hits]), strict=True)
    ]
    print_table(rows, ("SCORE", *ASSET_HEADERS))


@cli.command()
@click.argument("asset_ids", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_context
def rm(state: Context, /, asset_ids: tuple[str, ...], yes: bool, as_json: bool) -> None:
    """Delete assets (and their blobs, when no other asset shares them)."""
    store = state.store()
    records = [store.resolve(i) for i in asset_ids]
    if not yes and not as_json:
        names = ", ".join(f"{r.id[:12]} ({r.label})" for r in records[:5])
        more = f" and {len(records) - 5} more" if len(records) > 5 else ""
        click.confirm(f"Delete {names}{more}?", abort=True, err=True)
    report = store.delete([r.id for r in records])
    if as_json:
        emit_json(
            {
                "deleted": report.deleted,
                "spared": report.spared,
                "blobs_deleted": report.blobs_deleted,
                "bytes_freed": report.bytes_freed,
            }
        )
    else:
        click.echo(
            f"Deleted {len(report.deleted)} assets; freed {human_size(report.bytes_freed)}"
            + (f"; kept by plugins: {', '.join(report.spared)}" if report.spared else "")
        )


@cli.command()
@click.option("--quota", help="Target size, e.g. 2GB or 500MiB (default: [gc] quota).")
@click.option("--dry-run", is_flag=True, help="Show what would be evicted; change nothing.")
@json_option
@pass_context
def gc(state: Context, /, quota: str | None, dry_run: bool, as_json: bool) -> None:
    """Evict least recently used assets until the store fits the quota."""
    report = state.store().gc(quota, dry_run=dry_run)
    if as_json:
        emit_json(_convert.unstructure(report) | {"freed": report.freed, "over_quota": report.over_quota})
        return
    verb = "Would evict" if dry_run else "Evicted"
    rows = [
        [e.asset_id[:12], short(e.label, 32), human_size(e.size), ago(e.last_used), human_size(e.freed)]
        for e in report.evicted
    ]
    if rows:
        print_table(rows, ("ID", "LABEL", "SIZE", "LAST USED", "FREES"))
    click.echo(
        f"{verb} {len(report.evicted)} assets: {human_size(report.before)} -> {human_size(report.after)} "
        f"(quota {human_size(report.quota)})"
    )
    if report.over_quota:
        click.echo("Still over quota: everything left is pinned, pending or kept by a plugin.", err=True)


@cli.command()
@json_option
@pass_context
def stats(state: Context, /, as_json: bool) -> None:
    """Counts and sizes: assets, blobs, bytes stored and saved by deduplication."""
    s = state.store().stats()
    if as_json:
        emit_json(_convert.unstructure(s))
        return
    u = s.usage
    click.echo(f"assets        {u.assets}")
    click.echo(f"blobs         {u.blobs}")
    click.echo(f"stored        {human_size(u.stored_bytes)}")
    click.echo(f"dedup saves   {human_size(u.logical_bytes - u.stored_bytes)}")
    click.echo("by kind       " + (", ".join(f"{k} {n}" for k, n in sorted(s.by_kind.items())) or "-"))
    click.echo(f"storage       {s.storage}")
    click.echo(f"catalog       {s.catalog}")


@cli.command()
@click.argument("asset_id")
@click.option("--expires", type=click.IntRange(min=1), default=3600, show_default=True, help="Seconds.")
@pass_context
def url(state: Context, /, asset_id: str, expires: int) -> None:
    """Print a time-limited download URL (storage backends that can sign, such as S3)."""
    store = state.store()
    click.echo(store.url(store.resolve(asset_id).id, expires=timedelta(seconds=expires)))


@cli.command()
@pass_context
def compact(state: Context) -> None:
    """Merge small catalog writes, drop old versions and build missing indexes."""
    state.store().compact()
    click.echo("Catalog compacted.")


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Also list the hooks each plugin implements.")
@click.option("--hook", help="Only plugins implementing this hook (e.g. assetry_ingest).")
@json_option
@pass_context
def plugins(state: Context, /, show_all: bool, hook: str | None, as_json: bool) -> None:
    """List installed plugins, their versions and status (loaded, blocked, failed)."""
    try:
        block = load_config(state.config_path).plugins.block
    except ConfigError:
        block = ()
    infos = get_plugin_manager(block=block).describe()
    if hook:
        infos = [i for i in infos if hook in i.hooks]
    if as_json:
        emit_json([_convert.unstructure(i) for i in infos])
        return
    for info in infos:
        status = "" if info.status == "loaded" else f"  [{info.status}]"
        click.echo(f"{info.name} {info.version or ''}{status}")
        if show_all:
            for name in info.hooks:
                click.echo(f"    {name}")


@cli.command(name="config")
@json_option
@pass_context
def show_config(state: Context, /, as_json: bool) -> None:
    """Show the effective configuration (file + environment + defaults), secrets redacted."""
    store: dict[str, str] = {}
    if state.root:
        store["root"] = state.root
    if state.tenant is not None:
        store["tenant"] = state.tenant
    cfg = load_config(state.config_path, overrides={"store": store} if store else None)
    # Plugin tables checked and completed with their defaults, as opening a store does.
    cfg = cfg.claim_sections(config_claims(get_plugin_manager(block=cfg.plugins.block)))
    data = cfg.to_dict()
    if as_json:
        emit_json({"source": cfg.source.name if cfg.source else None, **data})
        return
    # TOML, so that it can be copied into an assetry.toml; a value that is not set is a comment.
    click.echo(f"# from {cfg.source if cfg.source else 'defaults (no assetry.toml found)'}")
    for section, values in data.items():
        click.echo(f"\n[{section}]")
        for key, value in values.items():
            click.echo(f"# {key} = (not set)" if value is None else f"{key} = {_toml_value(value)}")


def _toml_value(value: Any) -> str:
    """A TOML literal for plain configuration data (strings, numbers, booleans, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


# -- the daemon ----------------------------------------------------------------------------------------------


@cli.group()
def daemon() -> None:
    """A background process that makes every command start in a fraction of a second.

    It imports assetry, its plugins and LanceDB once and runs each command in a fork of itself: the
    command still reads assetry.toml from where you run it, your environment and your terminal. It
    serves this Python environment only, and stops when idle, or when the installed code changes."""


@daemon.command(name="start")
@click.option(
    "--idle",
    type=click.FloatRange(min=1),
    default=DEFAULT_IDLE_SECONDS,
    show_default=True,
    help="Stop after this many seconds without a command.",
)
def daemon_start(idle: float) -> None:
    """Start the daemon in the background (does nothing if it runs already)."""
    import time

    from assetry import _launch

    if not _launch.supported():
        raise click.ClickException("the daemon needs Unix sockets (Linux, macOS)")
    path = _launch.socket_path()
    running = _launch.ask({"op": "status"}, path)
    if running is not None:
        click.echo(f"The assetry daemon is already running (pid {running.get('pid')}).")
        return
    directory = os.path.dirname(path)
    if not _launch.private_dir(directory, create=True):
        raise click.ClickException(f"{directory} must be a directory only you can use")
    log_path = _launch.log_path(path)
    process = _launch.spawn(path, idle)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = _launch.ask({"op": "status"}, path)
        if running is not None:
            click.echo(f"Started the assetry daemon (pid {running.get('pid')}); its log: {log_path}")
            return
        if process.poll() is not None:
            tail = Path(log_path).read_text(errors="replace").strip().splitlines()[-3:]
            raise click.ClickException("the daemon did not start: " + " / ".join(tail))
        time.sleep(0.05)
    process.terminate()
    raise click.ClickException(f"the daemon did not answer within 120 s; see {log_path}")


@daemon.command(name="stop")
def daemon_stop() -> None:
    """Stop the daemon (commands it is running finish first)."""
    from assetry import _launch

    reply = _launch.ask({"op": "stop"})
    if reply is None:
        click.echo("No assetry daemon is running.")
        return
    click.echo("Stopping the assetry daemon.")


@daemon.command(name="status")
@json_option
def daemon_status(as_json: bool) -> None:
    """Is a daemon running for this environment, and what has it done? (Exit status 3 if not running.)"""
    from assetry import _launch

    reply = _launch.ask({"op": "status"})
    if as_json:
        emit_json(
            {"running": True, **reply} if reply else {"running": False, "socket": _launch.socket_path()}
        )
    elif reply is None:
        click.echo(f"No assetry daemon is running (it would listen on {_launch.socket_path()}).")
    else:
        started = datetime.fromtimestamp(reply["started"], UTC)
        click.echo(
            f"The assetry daemon is running: pid {reply['pid']}, started {ago(started)}, "
            f"{reply['served']} commands served, {reply['commands_running']} running now; "
            f"socket {reply['socket']}"
        )
    if reply is None:
        raise SystemExit(3)


# -- entry point --------------------------------------------------------------------------------------------


def _config_argument(argv: Sequence[str]) -> str | None:
    """The value of the global --config option, spelt ``--config F``, ``--config=F``, ``-c F`` or ``-cF``."""
    args = iter(argv)
    for arg in args:
        if arg in ("--config", "-c"):
            return next(args, None)
        if arg.startswith("--config="):
            return arg.partition("=")[2]
        if arg.startswith("-c") and not arg.startswith("--"):
            return arg[2:]
        if arg in ("--root", "--tenant"):
            next(args, None)
        elif not arg.startswith("-"):
            return None  # the command: the options after it are its own
    return None


def _plugin_commands(argv: Sequence[str]) -> None:
    """Let plugins add commands before click parses the arguments."""
    config_path = _config_argument(argv)
    try:
        block = load_config(config_path or os.environ.get("ASSETRY_CONFIG") or None).plugins.block
    except AssetryError:
        block = ()  # the command itself will report the configuration error
    pm = get_plugin_manager(block=block)
    # One implementation at a time: a plugin that fails here must not take every command down with it
    # (`assetry plugins` included, which is where its user would look).
    for impl in pm.hook.assetry_cli_commands.get_hookimpls():
        try:
            impl.function(**{name: cli for name in impl.argnames})
        except Exception as exc:
            log.warning(
                "plugin %s failed to add its commands: %s: %s", impl.plugin_name, type(exc).__name__, exc
            )


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    _plugin_commands(args)
    cli.main(args=args, prog_name="assetry")
