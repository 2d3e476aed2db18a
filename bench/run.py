"""Run the assetry benchmarks against their baselines and write the results.

    python bench/run.py                 # everything, full size
    python bench/run.py --quick         # smaller catalogs, fewer runs (a few minutes)
    python bench/run.py --only search   # one workload (repeatable); other results are kept
    nox -s bench -- --quick --with-dvc  # the same through nox, with DVC installed for its baseline

Full runs write ``bench/results/full.json`` and ``docs/benchmarks.md``; quick runs write
``bench/results/raw/quick.json`` and ``bench/results/raw/benchmarks-quick.md`` (not committed).
Scratch data goes to ``--work`` (default: a directory under the system temp dir) and is removed
afterwards, except the generated source files, which later runs reuse. A full run takes about 10
minutes on 2 cores (the 1M-row catalogs dominate); a quick run about 5.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, REPO, log, machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller catalogs and fewer runs")
    parser.add_argument("--only", action="append", default=[], help="run only this workload (repeatable)")
    parser.add_argument("--runs", type=int, help="repetitions of each timed step (default 5, quick 3)")
    parser.add_argument("--work", type=Path, help="scratch directory (needs ~6 GB free)")
    parser.add_argument("--with-dvc", action="store_true", help="require DVC for the dvc baseline")
    parser.add_argument("--doc", type=Path, help="where to write the Markdown report")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the Markdown from the saved results (after editing notes)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import workloads
    from report import render

    if args.child:
        return _child(args.child)
    unknown = [name for name in args.only if name not in workloads.WORKLOADS]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(workloads.WORKLOADS)}")
    if args.with_dvc and not _has_dvc():
        parser.error("--with-dvc: the dvc command is not installed (nox -s bench -- --with-dvc installs it)")
    mode = "quick" if args.quick else "full"
    work = args.work or Path(tempfile.gettempdir()) / "assetry-bench"
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # no assetry.toml from the repository or its parents may configure the stores
    settings = workloads.Settings(quick=args.quick, work=work, runs=args.runs)

    # Only full runs are published; quick runs (development) stay out of git, under raw/.
    raw_dir = BENCH / "results" / "raw"
    results_path = BENCH / "results" / "full.json" if mode == "full" else raw_dir / "quick.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    results.setdefault("workloads", {})
    results["mode"] = mode
    names = [] if args.render_only else args.only or list(workloads.WORKLOADS)
    if names or "machine" not in results:
        results["machine"] = machine()
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        log(f"== {name} ({mode})")
        started = time.time()
        outcome = workloads.WORKLOADS[name](settings)
        outcome["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started))
        outcome["wall_seconds"] = round(time.time() - started, 1)
        outcome.setdefault("runs", settings.runs)
        results["workloads"][name] = outcome
        for t in outcome.get("targets", []):
            log(f"   {'MET ' if t['met'] else 'MISS'} {t['name']}: {t['value']} (limit {t['limit']})")
        # Saved after every workload, so an interrupted full run keeps what it measured.
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
        (raw_dir / f"{stamp}-{mode}-{name}.json").write_text(
            json.dumps(outcome, indent=1, default=str) + "\n"
        )
    doc = args.doc or (REPO / "docs" / "benchmarks.md" if mode == "full" else raw_dir / "benchmarks-quick.md")
    doc.write_text(render(results))
    log(f"wrote {results_path.relative_to(REPO)} and {doc}")
    return 0


def _child(args: list[str]) -> int:
    import workloads

    if args[0] == "ingest":
        print(json.dumps(workloads.child_ingest(args[1], args[2])))
        return 0
    if args[0] == "import-floor":
        print(json.dumps(workloads.child_import_floor()))
        return 0
    raise SystemExit(f"unknown child command {args[0]!r}")


def _has_dvc() -> bool:
    import shutil

    return shutil.which("dvc") is not None


if __name__ == "__main__":
    raise SystemExit(main())
