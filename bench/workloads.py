"""The benchmark workloads. Each returns a JSON-able dict: raw per-run numbers, medians, and the targets
it checks. Every timed step is measured ``runs`` times with its baseline beside it in the same run, in
an order shuffled per run, and ratios are taken per run before their median."""

# ruff: noqa: B023 (the step closures are called at once, inside the iteration that defines them)
from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import synth
from common import (
    GIB,
    KIB,
    MIB,
    Outputs,
    child_python,
    clean_env,
    fresh,
    log,
    median,
    p95,
    remove,
    run_child,
    settle,
    timed,
    warm,
)

import assetry
from assetry.digests import new_hasher

DIMENSION = 384


class Settings:
    def __init__(self, *, quick: bool, work: Path, runs: int | None) -> None:
        self.quick = quick
        self.work = work
        self.data = work / "data"
        self.runs = runs or (3 if quick else 5)
        # Writes compared with `cp` get more runs: on this VM the same `cp -r` of 512 MB took 0.24-1.55 s
        # within one full run (docs/benchmarks.md, "This VM makes writes noisy").
        self.write_runs = runs or (3 if quick else 7)
        # The read path's two settings differ by less than a run's spread: over 10 runs the per-run
        # ratios went from 0.81 to 1.19 (median 0.98), and 5 runs once gave 1.13.
        self.read_runs = runs or (3 if quick else 9)


def target(
    name: str,
    value: float,
    limit: float,
    *,
    at_most: bool,
    unit: str = "x",
    bound: tuple[float, str] | None = None,
) -> dict[str, Any]:
    """A target and whether it was met. ``bound``: what the same run measured as the best any
    implementation could reach here (a floor for an upper limit, a ceiling for a lower one), and how."""
    met = value <= limit if at_most else value >= limit
    return {
        "name": name,
        "value": round(value, 4),
        "limit": limit,
        "at_most": at_most,
        "unit": unit,
        "met": met,
        **({"bound": round(bound[0], 4), "bound_by": bound[1]} if bound else {}),
    }


def open_store(root: Path, **overrides: Any) -> Any:
    overrides.setdefault("vectors", {"dimension": DIMENSION})
    overrides.setdefault("ingest", {"digest_cache_path": digest_cache_of(root)})
    return assetry.open(root=root, **overrides)


def digest_cache_of(root: Path) -> str:
    """Every store gets its own digest cache, so each first ingest starts without one, as the first
    ingest of newly generated files would (and the user's own cache is left alone)."""
    return f"{root}-digests.sqlite"


def _shuffled(steps: dict[str, Callable[[], None]], run: int) -> list[tuple[str, Callable[[], None]]]:
    items = list(steps.items())
    random.Random(run).shuffle(items)
    return items


def _summary(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: round(median(values), 4) for name, values in samples.items() if values}


# -- 1 + 3: bulk ingest of small files, and re-ingest of the same files --------------------------------------


def py_copy_hash(src: Path, dst: Path, *, sharded: bool = False, threads: int = 1) -> None:
    """The simplest content-addressed copy in Python: one read/hash/write pass per file, then a rename
    to the digest (what any CAS must do at least). ``sharded`` renames into assetry's blob layout,
    ``<d0d1>/<d2d3>/<digest>``, creating its directories as they are needed: what the layout costs.
    ``threads`` spreads the files over that many threads (reads, hashing and writes release the GIL)."""
    dst.mkdir(parents=True)
    entries = [
        e for e in sorted(os.scandir(src), key=lambda e: e.name) if e.is_file() and not e.name.startswith(".")
    ]

    def copy(share: list[os.DirEntry[str]], worker: int) -> None:
        view = memoryview(bytearray(MIB))
        for i, entry in enumerate(share):
            hasher = new_hasher("blake3", threads=False)
            tmp = dst / f".tmp{worker}-{i}"
            with open(entry.path, "rb") as reader, open(tmp, "wb") as writer:
                while n := reader.readinto(view):
                    hasher.update(view[:n])
                    writer.write(view[:n])
            digest = hasher.hexdigest()
            if sharded:
                final = dst / digest[:2] / digest[2:4] / digest
                try:
                    os.replace(tmp, final)
                except FileNotFoundError:  # directories made when first needed, as assetry does
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, final)
            else:
                os.replace(tmp, dst / digest)

    if threads == 1:
        copy(entries, 0)
        return
    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(copy, entries[k::threads], k) for k in range(threads)]:
            done.result()


LOOPS = ("py_copy_hash", "py_copy_hash_2threads", "py_copy_hash_sharded", "py_copy_hash_sharded_2threads")
"""The copy + hash loops of table 1 (`py_copy_hash` with no options, 2 threads, the layout, both)."""


def ingest_small(cfg: Settings) -> dict[str, Any]:
    count, size = 2000, 256 * KIB
    src = synth_files(cfg, "small", count, size, seed=1)
    tiny = synth_files(cfg, "one", 1, 4 * KIB, seed=3)
    dvc = _dvc()
    clis = ("cli", "cli_daemon")  # a whole `assetry` process, without and with the daemon running
    samples: dict[str, list[float]] = {
        k: []
        for k in (
            "cp",
            *LOOPS,
            "api",
            "api_reingest",
            *(f"{c}{suffix}" for c in clis for suffix in ("", "_reingest", "_one_file")),
            "dvc",
        )
    }
    ratios: dict[str, list[float]] = {
        k: []
        for k in (
            "api_vs_cp",
            "api_vs_py",
            "api_vs_floor",
            *(f"{loop}_vs_cp" for loop in LOOPS),
            "api_vs_dvc",
            "api_reingest",
            *(f"{c}{suffix}" for c in clis for suffix in ("_vs_cp", "_vs_dvc", "_reingest")),
            *(f"{c}_one_file{suffix}" for c in clis for suffix in ("_vs_cp", "_vs_dvc", "_reingest")),
        )
    }
    scratch = cfg.work / "scratch"
    # The daemon runs through every run (started once, outside the timings, as a user starts it once);
    # the cold CLI is told not to use it.
    daemon_env = {**clean_env(), "ASSETRY_DAEMON_DIR": str(fresh(scratch / "daemon"))}
    cold_env = {**clean_env(), "ASSETRY_DAEMON": "0"}
    run_child([sys.executable, "-m", "assetry", "daemon", "start", "--idle", "900"], env=daemon_env)
    try:
        envs = {"cli": cold_env, "cli_daemon": daemon_env}
        with Outputs(scratch / "ingest_small") as outputs:
            _ingest_small_runs(cfg, outputs, (src, count, tiny), dvc, samples, ratios, envs)
    finally:
        run_child([sys.executable, "-m", "assetry", "daemon", "stop"], env=daemon_env)
    ratio = _summary(ratios)
    layout = (ratio["py_copy_hash_sharded_2threads_vs_cp"], "copy + hash into the blob layout, 2 threads")
    start_up = "the command's start-up (adding one 4 KiB file)"
    how = {"cli_daemon": "CLI, daemon running", "cli": "CLI, no daemon"}
    targets = [
        target("bulk ingest (Python API) / cp -r", ratio["api_vs_cp"], 1.3, at_most=True, bound=layout),
        # The larger of two floors: a command copies as much as the loop, after starting up.
        *(
            target(
                f"bulk ingest ({how[c]}) / cp -r",
                ratio[f"{c}_vs_cp"],
                1.3,
                at_most=True,
                bound=max(layout, (ratio[f"{c}_one_file_vs_cp"], start_up)),
            )
            for c in how
        ),
        target(
            "first ingest / re-ingest of duplicates (Python API)", ratio["api_reingest"], 3.0, at_most=False
        ),
        *(
            target(
                f"first ingest / re-ingest of duplicates ({how[c]})",
                ratio[f"{c}_reingest"],
                3.0,
                at_most=False,
                bound=(ratio[f"{c}_one_file_reingest"], start_up),
            )
            for c in how
        ),
    ]
    if dvc:
        targets.append(target("bulk ingest (Python API) / dvc add", ratio["api_vs_dvc"], 0.5, at_most=True))
        targets += [
            target(
                f"bulk ingest ({how[c]}) / dvc add",
                ratio[f"{c}_vs_dvc"],
                0.5,
                at_most=True,
                bound=(ratio[f"{c}_one_file_vs_dvc"], start_up),
            )
            for c in how
        ]
    return {
        "runs": cfg.write_runs,
        "files": count,
        "file_size": size,
        "dvc": dvc is not None,
        "seconds": {k: v for k, v in samples.items() if v},
        "median_seconds": _summary(samples),
        "median_ratios": ratio,
        "targets": targets,
    }


def _ingest_small_runs(
    cfg: Settings,
    outputs: Outputs,
    files: tuple[Path, int, Path],
    dvc: str | None,
    samples: dict[str, list[float]],
    ratios: dict[str, list[float]],
    cli_envs: dict[str, dict[str, str]],
) -> None:
    src, count, tiny = files
    for run in range(cfg.write_runs):
        times: dict[str, float] = {}

        def cp() -> None:
            times["cp"] = run_child(["cp", "-r", str(src), str(outputs("cp"))])["seconds"]

        def loop(key: str, **options: Any) -> None:
            dst = outputs(key)
            times[key], _ = timed(lambda: py_copy_hash(src, dst, **options))

        def api() -> None:
            store = open_store(outputs("api"))
            times["api"], first = timed(lambda: store.add_many([src]))
            settle()
            times["api_reingest"], again = timed(lambda: store.add_many([src]))
            assert first.added == count, first
            assert again.duplicates == count, again
            assert again.files_unread == count, again  # known by the digest cache, none read
            store.close()

        def cli(name: str) -> None:
            env = cli_envs[name]

            def add(root: Path, source: Path) -> float:
                args = [sys.executable, "-m", "assetry", "--root", str(root), "add", str(source)]
                cache = {"ASSETRY_INGEST__DIGEST_CACHE_PATH": digest_cache_of(root)}
                return float(run_child(args, cwd=cfg.work, env={**env, **cache})["seconds"])

            root = outputs(name)
            times[name] = add(root, src)
            settle()
            times[f"{name}_reingest"] = add(root, src)
            settle()
            times[f"{name}_one_file"] = add(outputs(f"{name}-one"), tiny)

        steps = {
            "cp": cp,
            "py": lambda: loop("py_copy_hash"),
            "py_2threads": lambda: loop("py_copy_hash_2threads", threads=2),
            "py_sharded": lambda: loop("py_copy_hash_sharded", sharded=True),
            # The least any ingest into assetry's layout does, on both cores: its floor.
            "py_sharded_2threads": lambda: loop("py_copy_hash_sharded_2threads", sharded=True, threads=2),
            "api": api,
            "cli": lambda: cli("cli"),
            "cli_daemon": lambda: cli("cli_daemon"),
        }
        if dvc:

            def dvc_add() -> None:
                repo = outputs("dvc")
                repo.mkdir(parents=True)
                run_child([dvc, "init", "--no-scm", "-q"], cwd=repo)
                run_child(["cp", "-r", str(src), str(repo / "data")])
                settle()
                times["dvc"] = run_child([dvc, "add", "-q", "data"], cwd=repo)["seconds"]

            steps["dvc"] = dvc_add
        for _, step in _shuffled(steps, run):
            settle()
            step()
        for key, value in times.items():
            samples[key].append(value)
        ratios["api_vs_cp"].append(times["api"] / times["cp"])
        ratios["api_vs_py"].append(times["api"] / times["py_copy_hash"])
        ratios["api_vs_floor"].append(times["api"] / times["py_copy_hash_sharded_2threads"])
        for loop in LOOPS:
            ratios[f"{loop}_vs_cp"].append(times[loop] / times["cp"])
        ratios["api_reingest"].append(times["api"] / times["api_reingest"])
        for name in cli_envs:
            ratios[f"{name}_vs_cp"].append(times[name] / times["cp"])
            ratios[f"{name}_reingest"].append(times[name] / times[f"{name}_reingest"])
            # Bounds: no command is faster than its start-up (one 4 KiB file), so a re-ingest is never
            # more than (first ingest / start-up) times faster than the first.
            ratios[f"{name}_one_file_vs_cp"].append(times[f"{name}_one_file"] / times["cp"])
            ratios[f"{name}_one_file_reingest"].append(times[name] / times[f"{name}_one_file"])
        if dvc:
            ratios["api_vs_dvc"].append(times["api"] / times["dvc"])
            for name in cli_envs:
                ratios[f"{name}_vs_dvc"].append(times[name] / times["dvc"])
                ratios[f"{name}_one_file_vs_dvc"].append(times[f"{name}_one_file"] / times["dvc"])
        log(
            f"ingest_small run {run + 1}/{cfg.write_runs}: "
            + ", ".join(f"{k} {v:.2f}s" for k, v in times.items())
        )


def _dvc() -> str | None:
    import shutil

    return shutil.which("dvc")


def synth_files(cfg: Settings, name: str, count: int, size: int, *, seed: int) -> Path:
    from common import make_files

    path = make_files(cfg.data / name, count, size, seed=seed)
    warm(path)
    return path


# -- 2: large files ------------------------------------------------------------------------------------------


def ingest_large(cfg: Settings) -> dict[str, Any]:
    cases = {
        "20 x 64 MiB": synth_files(cfg, "large64", 20, 64 * MIB, seed=5),
        "1 x 1 GiB": synth_files(cfg, "large1g", 1, GIB, seed=6),
    }
    tiny = synth_files(cfg, "one", 1, 4 * KIB, seed=3)
    scratch = cfg.work / "scratch"
    # More runs than elsewhere: writing a GiB into memory the VM has not touched lately costs several
    # times more than into recycled pages, and which side gets which is luck (see docs/benchmarks.md).
    runs = cfg.write_runs
    result: dict[str, Any] = {"cases": {}, "runs": runs}
    floor = []
    for _ in range(runs):
        root = fresh(scratch / "floor")
        floor.append(child_python("ingest", str(root), str(tiny))["peak_rss_mib"])
        remove(root)
    result["rss_floor_mib"] = round(median(floor), 1)
    imports = [child_python("import-floor") for _ in range(runs)]
    result["import_lancedb_rss_mib"] = round(median([i["peak_rss_mib"] for i in imports]), 1)
    result["import_lancedb_seconds"] = round(median([i["seconds"] for i in imports]), 3)
    targets = []
    for name, src in cases.items():
        total = sum(p.stat().st_size for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
        samples: dict[str, list[float]] = {
            "cp": [],
            "api": [],
            "ratio": [],
            "rss": [],
            "cp_rss": [],
            "rss_before": [],
            "rss_file_before": [],
            "anon_before": [],
            "peak_anon": [],
        }
        for run in range(runs):
            measured: dict[str, Any] = {}

            def cp() -> None:
                dst = fresh(scratch / "cp")
                # Through /usr/bin/time: a child's own ru_maxrss would include this process's size.
                out = run_child(["/usr/bin/time", "-f", "%M", "cp", "-r", str(src), str(dst)])
                rss_kib = int(out["stderr"].strip().splitlines()[-1])
                measured["cp"], measured["cp_rss"] = out["seconds"], rss_kib / 1024
                remove(dst)

            def api() -> None:
                root = fresh(scratch / "large")
                out = child_python("ingest", str(root), str(src))
                measured["api"], measured["rss"] = out["seconds"], out["peak_rss_mib"]
                measured["rss_before"] = out["rss_before_mib"]
                measured["rss_file_before"] = out["rss_file_before_mib"]
                measured["anon_before"] = out["rss_anon_before_mib"]
                measured["peak_anon"] = out["peak_anon_mib"]
                remove(root)

            for _, step in _shuffled({"cp": cp, "api": api}, run):
                settle()
                warm(src)
                step()
            for key in (
                "cp",
                "api",
                "rss",
                "cp_rss",
                "rss_before",
                "rss_file_before",
                "anon_before",
                "peak_anon",
            ):
                samples[key].append(measured[key])
            # Throughput ratio: ours / cp's, i.e. cp's time over ours.
            samples["ratio"].append(measured["cp"] / measured["api"])
            log(
                f"ingest_large {name} run {run + 1}/{runs}: cp {measured['cp']:.2f}s, "
                f"assetry {measured['api']:.2f}s, peak RSS {measured['rss']:.0f} MiB"
            )
        med = _summary(samples)
        result["cases"][name] = {
            "bytes": total,
            "seconds": samples,
            "median_seconds": {"cp": med["cp"], "assetry": med["api"]},
            "throughput_mib_s": {
                "cp": round(total / MIB / med["cp"], 1),
                "assetry": round(total / MIB / med["api"], 1),
            },
            "throughput_ratio": med["ratio"],
            "peak_rss_mib": med["rss"],
            "rss_before_ingest_mib": med["rss_before"],
            "rss_file_before_ingest_mib": med["rss_file_before"],
            "private_before_ingest_mib": med["anon_before"],
            "private_peak_mib": med["peak_anon"],
            "cp_peak_rss_mib": med["cp_rss"],
        }
        targets.append(
            target(f"large-file ingest throughput / cp ({name})", med["ratio"], 0.8, at_most=False)
        )
        targets.append(
            target(
                f"peak RSS, MiB ({name})",
                med["rss"],
                150,
                at_most=True,
                unit="MiB",
                bound=(result["rss_floor_mib"], "the same ingest of one 4 KiB file"),
            )
        )
    result["targets"] = targets
    return result


def child_ingest(root: str, src: str) -> dict[str, Any]:
    """In a fresh interpreter: open a store, ingest ``src``; time of the ingest and the process's peak RSS.

    The peak is VmHWM, not getrusage: ru_maxrss survives exec, so a child started from the (large)
    bench process would report the parent's size."""
    store = open_store(Path(root))
    before = memory_mib()
    # Private memory is sampled (the kernel keeps a peak only of the total): every 5 ms, ~20 us each.
    peak_anon = [before["RssAnon"]]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak_anon.append(memory_mib()["RssAnon"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        seconds, report = timed(lambda: store.add_many([src]))
    finally:
        done.set()
        sampler.join()
    store.close()
    return {
        "seconds": seconds,
        "assets": len(report.assets),
        "rss_before_mib": before["VmRSS"],
        "rss_file_before_mib": before["RssFile"],
        "rss_anon_before_mib": before["RssAnon"],
        "peak_anon_mib": max(peak_anon),
        "peak_rss_mib": memory_mib()["VmHWM"],
    }


def memory_mib() -> dict[str, float]:
    """This process's memory from /proc/self/status, in MiB: resident now (VmRSS) and at its peak
    (VmHWM), and the resident memory that is its own (RssAnon) or maps files (RssFile: shared libraries)."""
    fields = ("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")
    return {
        line.split(":")[0]: int(line.split()[1]) / 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith(fields)
    }


def child_import_floor() -> dict[str, Any]:
    """Peak RSS and time of importing LanceDB alone: the floor under any process that opens a catalog."""
    started = time.perf_counter()
    import lancedb  # noqa: F401

    return {"seconds": time.perf_counter() - started, "peak_rss_mib": memory_mib()["VmHWM"]}


# -- 4: search -----------------------------------------------------------------------------------------------

FILTERS: dict[str, dict[str, Any]] = {
    "none": {},
    "broad": {"kind": "image"},
    "selective": {"project": "p000"},
}
LISTINGS: dict[str, dict[str, Any]] = {
    "newest": {},
    "newest_in_project": {"project": "p000"},
    "page_21": {"offset": 1_000},
}
"""`Store.find` calls timed on the search catalogs: a page of 50, newest first, its total counted."""
TEXT_QUERIES = [
    "castle",
    "neon dragon",
    "watercolor portrait",
    "ancient temple sunset",
    "robot",
    "cozy winter cat",
]


def search(cfg: Settings) -> dict[str, Any]:
    sizes = [100_000] if cfg.quick else [100_000, 1_000_000]
    queries = 30 if cfg.quick else 100
    result: dict[str, Any] = {"sizes": {}, "queries_per_case": queries}
    targets = []
    for size in sizes:
        entry = _search_size(cfg, size, queries)
        result["sizes"][str(size)] = entry
        for case, numbers in entry["vector"].items():
            targets.append(
                target(
                    f"recall@10, {size:,} rows, filter {case}",
                    numbers["recall_at_10"],
                    0.95,
                    at_most=False,
                    unit="",
                )
            )
        if size >= 1_000_000:
            # Index in memory, as numpy's vectors are (the cold-process speed-up is in the table too).
            speedup = entry["vector_warm"]["none"]["speedup_vs_numpy"]
            targets.append(
                target(
                    f"vector search speed-up over exact numpy, {size:,} rows, no filter, index in memory",
                    speedup,
                    10.0,
                    at_most=False,
                )
            )
    result["targets"] = targets
    return result


def _search_size(cfg: Settings, size: int, queries: int) -> dict[str, Any]:
    root = fresh(cfg.work / "scratch" / f"search-{size}")
    embeddings = synth.Embeddings(DIMENSION)
    store = open_store(root, catalog={"options": {"compact_every": 0}})
    fill_seconds, (ids, vectors) = timed(
        lambda: synth.fill(store, size, embeddings=embeddings, keep_vectors=True)
    )
    log(f"search: filled {size:,} rows in {fill_seconds:.1f}s")
    compact_seconds, _ = timed(store.compact)
    log(f"search: indexes built in {compact_seconds:.1f}s")
    assert vectors is not None
    id_array = np.array(ids)
    masks = synth.row_masks(size)
    qs = embeddings.queries(queries + 3)
    out: dict[str, Any] = {
        "rows": size,
        "fill_seconds": round(fill_seconds, 2),
        "index_build_seconds": round(compact_seconds, 2),
        "vector": {},
        "plan": {},
    }
    for case, kwargs in FILTERS.items():
        mask = masks[case]
        subset = vectors if case == "none" else vectors[mask]
        subset_ids = id_array if case == "none" else id_array[mask]
        exact_times: list[float] = []
        latencies: list[float] = []
        recalls: list[float] = []
        for i, q in enumerate(qs):
            t_exact, truth = timed(lambda q=q, subset=subset: np.argpartition(-(subset @ q), 10)[:10])
            if i < 3:  # warm-up: first queries load the indexes
                store.search(vector=q.tolist(), limit=10, **kwargs)
                continue
            t_ann, hits = timed(lambda q=q: store.search(vector=q.tolist(), limit=10, **kwargs))
            exact_times.append(t_exact)
            latencies.append(t_ann)
            truth_ids = set(subset_ids[truth].tolist())
            recalls.append(len(truth_ids & {h.asset.id for h in hits}) / 10)
        rows_matching = int(mask.sum())
        out["vector"][case] = {
            "rows_matching": rows_matching,
            "latency_ms_median": round(median(latencies) * 1000, 2),
            "latency_ms_p95": round(p95(latencies) * 1000, 2),
            "numpy_exact_ms_median": round(median(exact_times) * 1000, 2),
            "speedup_vs_numpy": round(median(exact_times) / median(latencies), 2),
            "recall_at_10": round(float(np.mean(recalls)), 4),
            "recall_at_10_min": round(float(np.min(recalls)), 2),
        }
        where = store.filter(**kwargs)
        from assetry_lancedb import sql

        clause = sql.where_clause(where)
        out["plan"][case] = store.catalog._plan(clause)[0]
        log(f"search {size:,} {case}: {out['vector'][case]} plan {out['plan'][case]}")
    # The same queries in a process that loaded the indexes at open (`prewarm_indexes`), as numpy has
    # its vectors in memory; above, the index is loaded a part at a time as the queries first touch it.
    warm = open_store(root, catalog={"options": {"compact_every": 0, "prewarm_indexes": True}})
    out["vector_warm"] = {}
    for case, kwargs in FILTERS.items():
        for q in qs[:3]:
            warm.search(vector=q.tolist(), limit=10, **kwargs)
        latencies = [timed(lambda q=q: warm.search(vector=q.tolist(), limit=10, **kwargs))[0] for q in qs[3:]]
        numpy_ms = out["vector"][case]["numpy_exact_ms_median"]
        out["vector_warm"][case] = {
            "latency_ms_median": round(median(latencies) * 1000, 2),
            "latency_ms_p95": round(p95(latencies) * 1000, 2),
            "speedup_vs_numpy": round(numpy_ms / (median(latencies) * 1000), 2),
        }
        log(f"search {size:,} {case}, indexes prewarmed: {out['vector_warm'][case]}")
    warm.close()
    text_latencies = []
    for _ in range(3):
        for text in TEXT_QUERIES:
            t, _ = timed(lambda text=text: store.search(text, limit=10))
            text_latencies.append(t)
    hybrid = []
    for q, text in zip(qs[:10], TEXT_QUERIES * 2, strict=False):
        t, _ = timed(lambda q=q, text=text: store.search(text, vector=q.tolist(), limit=10))
        hybrid.append(t)
    out["anatomy_ms"] = _query_anatomy(store, qs[3:23])
    out["listing_ms"] = {
        name: round(median([timed(lambda kw=kwargs: store.find(**kw))[0] for _ in range(11)]) * 1000, 2)
        for name, kwargs in LISTINGS.items()
    }
    # The page half-way through the catalog: by offset, and by the cursor the page before it returned.
    half = size // 2
    before = store.find(limit=50, offset=half - 50)
    for name, kwargs in (
        ("half_way_offset", {"offset": half}),
        ("half_way_cursor", {"after": before.next_cursor}),
    ):
        out["listing_ms"][name] = round(
            median([timed(lambda: store.find(**kwargs))[0] for _ in range(5)]) * 1000, 2
        )
    assert store.find(after=before.next_cursor).items == store.find(offset=half).items
    out["text"] = {
        "latency_ms_median": round(median(text_latencies[len(TEXT_QUERIES) :]) * 1000, 2),
        "latency_ms_p95": round(p95(text_latencies[len(TEXT_QUERIES) :]) * 1000, 2),
    }
    out["hybrid"] = {"latency_ms_median": round(median(hybrid) * 1000, 2)}
    out["catalog_mib_on_disk"] = round(_du(root) / MIB, 1)
    store.close()
    del vectors
    remove(root)
    return out


def _query_anatomy(store: Any, qs: np.ndarray) -> dict[str, float]:
    """Where an unfiltered vector query's time goes, measured piece by piece on the same catalog, through
    the async API `Store.search` uses (and, for comparison, LanceDB's synchronous one): the cheapest
    vector query (one partition, ids only), the ranking at the probes search uses, the same with the
    records, the usage lookup, and reading 10 hits' records packed vs as the 29 field columns."""
    from assetry_lancedb import catalog as lance_catalog
    from assetry_lancedb import rows

    catalog = store.catalog
    reads = catalog._reads
    nprobes = catalog._nprobes()

    def nearest(q: np.ndarray, probes: int, columns: list[str]) -> Any:
        async def query() -> Any:
            table = await reads._table(rows.ASSETS)
            search = table.query().nearest_to(q.tolist()).column(rows.VECTOR).distance_type("cosine")
            search = search.nprobes(probes).refine_factor(lance_catalog.ANN_REFINE_FACTOR).limit(10)
            return await search.select([*columns, "_distance"]).to_arrow()

        return reads._run(query())

    def sync_nearest(q: np.ndarray) -> Any:
        query = catalog._assets.search(q.tolist(), vector_column_name=rows.VECTOR).distance_type("cosine")
        query = query.nprobes(nprobes).refine_factor(lance_catalog.ANN_REFINE_FACTOR).limit(10)
        return query.select([*rows.ASSET_COLUMNS, "_distance"]).to_arrow()

    def med(fn: Callable[[int], Any]) -> float:
        fn(0)
        return round(median([timed(lambda i=i: fn(i))[0] for i in range(len(qs))]) * 1000, 2)

    table = catalog._assets
    row_ids = [
        table.search(q.tolist(), vector_column_name=rows.VECTOR)
        .distance_type("cosine")
        .nprobes(nprobes)
        .with_row_id(True)
        .limit(10)
        .select([rows.PRIMARY_KEY])
        .to_arrow()
        .column("_rowid")
        .to_pylist()
        for q in qs
    ]
    ids = [nearest(q, nprobes, [rows.PRIMARY_KEY]).column(rows.PRIMARY_KEY).to_pylist() for q in qs]
    fields = [f.name for f in table.schema if f.name not in (rows.RECORD, rows.VECTOR, rows.SEARCH_TEXT)]
    return {
        "nprobes": nprobes,
        "lancedb_query_floor": med(lambda i: nearest(qs[i], 1, [rows.PRIMARY_KEY])),
        "ranking_ids_only": med(lambda i: nearest(qs[i], nprobes, [rows.PRIMARY_KEY])),
        "ranking_with_records": med(lambda i: nearest(qs[i], nprobes, list(rows.ASSET_COLUMNS))),
        "ranking_with_records_sync_api": med(lambda i: sync_nearest(qs[i])),
        "usage_lookup_10_ids": med(lambda i: reads.usage(ids[i])),  # as `Store.search` reads them
        "read_10_rows_packed_record": med(
            lambda i: table.take_row_ids(row_ids[i]).select([rows.PRIMARY_KEY, rows.RECORD]).to_arrow()
        ),
        "read_10_rows_field_columns": med(lambda i: table.take_row_ids(row_ids[i]).select(fields).to_arrow()),
        "store_search": med(lambda i: store.search(vector=qs[i].tolist(), limit=10)),
    }


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- 5: read path with and without usage tracking ------------------------------------------------------------


def read_path(cfg: Settings) -> dict[str, Any]:
    count = 1000
    src = synth_files(cfg, "read", count, 8 * KIB, seed=9)
    root = fresh(cfg.work / "scratch" / "read")
    with open_store(root) as store:
        ids = [a.id for a in store.add_many([src]).assets]
    samples: dict[str, list[float]] = {"on": [], "off": []}
    ratios = []
    for run in range(cfg.read_runs):
        times = {}
        for mode in ["on", "off"] if run % 2 else ["off", "on"]:
            store = open_store(root, usage={"enabled": mode == "on"})
            store.read(ids[0])  # warm: first query opens the tables
            store.flush()

            def loop(store: Any = store) -> None:
                for asset_id in ids:
                    store.read(store.get(asset_id))
                store.flush()  # the buffered usage is part of the cost

            times[mode], _ = timed(loop)
            store.close()
        samples["on"].append(times["on"])
        samples["off"].append(times["off"])
        ratios.append(times["on"] / times["off"])
    with open_store(root) as store:
        store.get_many(ids[:10])
        get_many = [timed(lambda store=store: store.get_many(ids))[0] for _ in range(cfg.read_runs)]
    remove(root)
    overhead = median(ratios) - 1
    log(
        f"read_path: on {median(samples['on']):.2f}s off {median(samples['off']):.2f}s "
        f"overhead {overhead:.1%}"
    )
    return {
        "assets": count,
        "runs": cfg.read_runs,
        "seconds": samples,
        "median_seconds": _summary(samples),
        "ms_per_read": {k: round(median(v) / count * 1000, 3) for k, v in samples.items()},
        "usage_overhead": round(overhead, 4),
        "get_many_ms": round(median(get_many) * 1000, 2),
        "targets": [
            target("usage tracking overhead on get + read", overhead * 100, 10, at_most=True, unit="%")
        ],
    }


# -- 6: quota GC ---------------------------------------------------------------------------------------------


def gc(cfg: Settings) -> dict[str, Any]:
    sizes = [10_000, 100_000] if cfg.quick else [100_000, 1_000_000]
    result: dict[str, Any] = {"sizes": {}}
    medians = []
    for size in sizes:
        root = fresh(cfg.work / "scratch" / f"gc-{size}")
        store = open_store(root)
        # No vectors: GC reads none, and a million of them would only add an index build to the setup.
        fill_seconds, (ids, _) = timed(lambda: synth.fill(store, size, embeddings=None))
        _touch(store, ids[::5])
        store.compact()
        times, victims = [], []
        for _ in range(3):
            stored = store.catalog.storage_usage().stored_bytes
            settle()
            seconds, report = timed(lambda stored=stored: store.gc(int(stored * 0.99)))
            times.append(seconds)
            victims.append(len(report.evicted))
        store.close()
        remove(root)
        medians.append(median(times))
        result["sizes"][str(size)] = {
            "seconds": times,
            "median_seconds": round(median(times), 3),
            "victims_per_gc": victims,
            "fill_seconds": round(fill_seconds, 1),
        }
        log(f"gc {size:,}: {times} victims {victims}")
    growth = medians[1] / medians[0]
    size_ratio = sizes[1] / sizes[0]
    result["growth"] = round(growth, 2)
    result["size_ratio"] = size_ratio
    result["targets"] = [
        target(
            f"GC time growth {sizes[0]:,} -> {sizes[1]:,} assets (linear = {size_ratio:g}x)",
            growth,
            size_ratio,
            at_most=True,
        )
    ]
    return result


def _touch(store: Any, ids: list[str]) -> None:
    """Usage rows for some assets, as if they had been read (most LRU candidates then fall back to
    created_at, as never-read assets do)."""
    from assetry.model import UsageEvent, utcnow

    now = utcnow()
    for start in range(0, len(ids), 50_000):
        store.catalog.record_usage([UsageEvent(i, "read", now, None) for i in ids[start : start + 50_000]])


# -- 7: scaling ----------------------------------------------------------------------------------------------


def scaling(cfg: Settings) -> dict[str, Any]:
    total = 100_000
    first = synth_files(cfg, "small", 2000, 256 * KIB, seed=1)
    last = synth_files(cfg, "small-b", 2000, 256 * KIB, seed=2)
    # The machine changes within a minute (ratios of 0.99, 0.67 and 0.80 in one full run of three): as
    # many runs as the other workloads.
    runs = cfg.runs
    names = ("first", "twin", "last", "ratio", "ratio_same_store")
    samples: dict[str, list[float]] = {name: [] for name in names}
    with Outputs(cfg.work / "scratch" / "scaling") as outputs:
        for run in range(runs):
            _scaling_run(outputs, (first, last), total, samples, run)
            log(
                f"scaling run {run + 1}/{runs}: first 2,000 {samples['first'][-1]:.2f}s "
                f"(into another empty store, beside the next: {samples['twin'][-1]:.2f}s), "
                f"assets {total - 2000:,}-{total:,} {samples['last'][-1]:.2f}s"
            )
    med = _summary(samples)
    return {
        "runs": runs,
        "catalog_size": total,
        "seconds": samples,
        "files_per_second": {
            "first_2000": round(2000 / med["first"]),
            "first_2000_twin": round(2000 / med["twin"]),
            "at_100k": round(2000 / med["last"]),
        },
        "throughput_ratio": med["ratio"],
        "throughput_ratio_same_store": med["ratio_same_store"],
        "targets": [target("ingest throughput at 100k / at 2k assets", med["ratio"], 0.8, at_most=False)],
    }


def _scaling_run(
    outputs: Outputs, sources: tuple[Path, Path], total: int, samples: dict[str, list[float]], run: int
) -> None:
    """One store's first 2,000 assets, then 96,000 synthetic rows and a compaction, then its assets
    98,000-100,000. The same first 2,000 files also go into a second, empty store, timed beside the last
    ingest in a shuffled order, and the ratio compares those two: filling and compacting the catalog
    touches over a GiB of fresh memory (~0.5 GiB of page faults filling, ~0.6 GiB compacting), after
    which this VM writes more slowly for a while, so the store's own first ingest a minute earlier (its
    ratio is kept as ``ratio_same_store``) also measures that."""
    first, last = sources
    store = open_store(outputs("store"))
    settle()
    t_first, _ = timed(lambda: store.add_many([first]))
    synth.fill(store, total - 4000, embeddings=synth.Embeddings(DIMENSION))
    store.compact()
    twin = open_store(outputs("twin"))
    seconds: dict[str, float] = {}

    def ingest(name: str, into: Any, files: Path) -> Callable[[], None]:
        def step() -> None:
            warm(files)
            settle()
            seconds[name], report = timed(lambda: into.add_many([files]))
            assert report.added == 2000

        return step

    for _, step in _shuffled({"twin": ingest("twin", twin, first), "last": ingest("last", store, last)}, run):
        step()
    assert store.catalog.count(store.filter()) == total
    store.close()
    twin.close()
    samples["first"].append(t_first)
    samples["twin"].append(seconds["twin"])
    samples["last"].append(seconds["last"])
    samples["ratio"].append(seconds["twin"] / seconds["last"])
    samples["ratio_same_store"].append(t_first / seconds["last"])


WORKLOADS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "ingest_small": ingest_small,
    "ingest_large": ingest_large,
    "search": search,
    "read_path": read_path,
    "gc": gc,
    "scaling": scaling,
}


def wall_clock() -> float:
    return time.time()
