"""Shared helpers of the benchmark suite: timing, child processes with their peak memory, machine facts."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))])


def settle() -> None:
    """Write dirty pages back before a timed step, so one step's writeback does not land in the next."""
    os.sync()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def run_child(
    args: Sequence[str], *, cwd: str | Path | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a command; its wall time, peak RSS (from wait4, for this child alone) and output."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    # communicate() would reap the child; read the pipes first, then wait4 for its own rusage.
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{args[0]} {' '.join(args[1:3])}... failed ({proc.returncode}): {err.decode()[-2000:]}"
        )
    return {
        "seconds": elapsed,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "stdout": out.decode(),
        "stderr": err.decode(),
    }


def child_python(*args: str) -> dict[str, Any]:
    """Run ``bench/run.py --child ...`` (a fresh interpreter) and parse the JSON it prints."""
    result = run_child([sys.executable, str(BENCH / "run.py"), "--child", *args], env=clean_env())
    data: dict[str, Any] = json.loads(result["stdout"].strip().splitlines()[-1])
    data["process_seconds"] = result["seconds"]
    data["process_peak_rss_mib"] = result["peak_rss_mib"]
    return data


def clean_env() -> dict[str, str]:
    """The environment without any assetry configuration, so every store is configured by the bench."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ASSETRY")}


def make_files(directory: Path, count: int, size: int, *, seed: int) -> Path:
    """``count`` files of ``size`` random bytes (incompressible, all distinct)."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / ".complete"
    if marker.exists() and marker.read_text() == f"{count} {size} {seed}":
        return directory
    for old in directory.iterdir():
        old.unlink()
    rng = random.Random(seed)
    block = os.urandom(min(size, 8 * MIB))
    for i in range(count):
        with open(directory / f"gen-{i:06d}.bin", "wb") as f:
            remaining = size
            # A unique prefix per file keeps the content distinct without generating every byte afresh.
            prefix = rng.randbytes(32)
            f.write(prefix)
            remaining -= len(prefix)
            while remaining > 0:
                chunk = block[: min(remaining, len(block))]
                if size <= 8 * MIB:
                    chunk = rng.randbytes(len(chunk))
                f.write(chunk)
                remaining -= len(chunk)
    marker.write_text(f"{count} {size} {seed}")
    # Re-ingest measures files that already existed when they were first ingested, as a user's re-run
    # meets them: assetry's digest cache trusts only files unchanged for 2 s before an ingest began.
    time.sleep(2.1)
    return directory


def warm(directory: Path) -> None:
    """Read every file once, so both sides of a comparison start with the sources in the page cache."""
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(8 * MIB):
                    pass


def fresh(path: Path) -> Path:
    if path.exists():
        remove(path)
    return path


def remove(path: Path) -> None:
    if path.exists():
        # Published blobs are read-only files in writable directories: rmtree copes on POSIX.
        shutil.rmtree(path)


class Outputs:
    """Where a workload's timed steps write: a new directory for every step, all removed together when
    the workload ends (use as a context manager), none in between.

    Removing each step's output before the next step made the next step slow, in proportion to how
    many files and directories it creates. This VM's root filesystem is ext4 without a journal, and
    there ext4 does not reuse an inode freed less than 60 s ago (360 s while its inode table block is
    dirty): every inode allocation walks past those inodes one at a time. perf, creating 2,000 shard
    directories after a removal: ~65% of the time in ``recently_deleted`` and the buffer lookups it
    makes, 0.96-1.3 s in all against 0.05 s with no removal in the last few minutes. A journaled
    filesystem (ext4's default, XFS, btrfs, APFS) does no such walk.
    """

    def __init__(self, parent: Path) -> None:
        self.parent = fresh(parent)
        self._numbers = itertools.count(1)

    def __call__(self, name: str) -> Path:
        return self.parent / f"{name}-{next(self._numbers)}"

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, *exc: object) -> None:
        remove(self.parent)


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "filesystem": _filesystem(REPO),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "libraries": {
            name: version(name)
            for name in (
                "assetry-core",
                "assetry-fsspec",
                "assetry-lancedb",
                "assetry-media",
                "lancedb",
                "pyarrow",
                "numpy",
                "blake3",
                "pillow",
                "puremagic",
            )
        },
        "cp": _first_line(["cp", "--version"]),
        "dvc": _first_line(["dvc", "--version"]) if shutil.which("dvc") else None,
    }
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _filesystem(path: Path) -> str | None:
    try:
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, check=True).stdout
        return out.splitlines()[1].split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return None


def _first_line(args: list[str]) -> str | None:
    try:
        out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
        return out.strip().splitlines()[0] if out.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None
