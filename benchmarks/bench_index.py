"""Index speed: ``medconvert scan ARCHIVE -o index.parquet`` on 10,000 files with real scanner headers.

The archive is :mod:`make_real_archive`'s (every file a real file of
``../shared/conformance``: GE EPI, Siemens mosaics, Siemens XA and Philips enhanced
objects, the tilted GE CT; explicit and implicit VR; new UIDs only), cached in
``benchmarks/data/``. Each run is a whole process (start-up, imports, the header
scan in forked workers, series assembly, the DataFrame and the Parquet write)
timed with the measuring code of ``bench_dicom.py`` (wall time, CPU = user + sys
from ``wait4``, peak memory of the process tree). One untimed warm-up run (the
files in the page cache, as in a second look at the same archive), then
``--runs`` timed runs; the median wall time gives files/s.

Target: >= 2,000 files/s on 2 cores, whole process. Exit status 0 when it passes.

Before timing, the index of the first run is checked: one row per series, every
image file counted once (the sum of the ``files`` column plus the skipped files
equals the files in the archive), no patient column.

Usage::

    python benchmarks/bench_index.py                 # 10,000 files, 3 runs
    python benchmarks/bench_index.py --files 2000 --runs 1 --no-warmup
    python benchmarks/bench_index.py --instances     # one row per file instead
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_dicom as bd  # noqa: E402
import make_real_archive  # noqa: E402

TARGET_FILES_PER_S = 2000.0
DEFAULT_FILES = 10_000


def scan_argv(archive: Path, out: Path, instances: bool) -> list[str]:
    """The command timed: the real console entry point, as a user runs it."""
    return [sys.executable, "-m", "convert", "scan", str(archive), "-o", str(out)] + (
        ["--instances"] if instances else [])


def count_files(archive: Path) -> int:
    return sum(1 for p in archive.rglob("*") if p.is_file())


def check_index(index: Path, n_files: int, instances: bool) -> str:
    """'' when the index accounts for the archive, else what is wrong."""
    import pandas

    frame = pandas.read_parquet(index)
    if "patient_id" in frame.columns or "patient_name" in frame.columns:
        return "patient columns in an index written without --phi"
    counted = len(frame) if instances else int(frame["files"].sum())
    if counted > n_files or counted < n_files * 0.99:  # the generated archive holds DICOM images only
        return f"{counted} image files indexed of {n_files}"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=DEFAULT_FILES, help=f"archive size (default {DEFAULT_FILES})")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (default 3)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run")
    parser.add_argument("--instances", action="store_true", help="time --instances (one row per file)")
    parser.add_argument("--shared", type=Path, default=None, help="the shared data folder (default ../shared)")
    args = parser.parse_args(argv)

    try:
        archive = make_real_archive.generate(args.files, args.shared)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_files = count_files(archive)
    bd.precompile_medconvert(HERE.parent / "convert")
    work = bd.RESULTS_DIR / f"index-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True)
    runs: list[bd.Run] = []
    try:
        for n in range(args.runs + (0 if args.no_warmup else 1)):
            out_dir = work / f"run{n}"
            run = bd.run_once(scan_argv(archive, out_dir / "index.parquet", args.instances), out_dir,
                              expect_outputs=None)
            if not run.ok:
                print(f"error: medconvert scan failed: {run.error}", file=sys.stderr)
                return 1
            if n == 0:
                problem = check_index(out_dir / "index.parquet", n_files, args.instances)
                if problem:
                    print(f"error: wrong index: {problem}", file=sys.stderr)
                    return 1
            if n > 0 or args.no_warmup:
                runs.append(run)
            shutil.rmtree(out_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall = statistics.median(r.wall_s for r in runs)
    cpu = statistics.median(r.cpu_s for r in runs)
    peak = max(r.peak_mb for r in runs)
    rate = n_files / wall
    ok = rate >= TARGET_FILES_PER_S
    label = "medconvert scan -o index.parquet" + (" --instances" if args.instances else "")
    print(f"archive: {archive} ({n_files} files)")
    print("| command | runs | median s | min-max s | CPU s | peak MB | files/s | files per CPU s | target | result |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print(f"| `{label}` | {len(runs)} | {wall:.2f} | {min(r.wall_s for r in runs):.2f}-"
          f"{max(r.wall_s for r in runs):.2f} | {cpu:.2f} | {peak:.0f} | {rate:,.0f} | {n_files / cpu:,.0f} | "
          f">= {TARGET_FILES_PER_S:,.0f} | {'PASS' if ok else 'FAIL'} |")
    print(json.dumps({"files": n_files, "wall_s": [r.wall_s for r in runs], "cpu_s": [r.cpu_s for r in runs],
                      "peak_mb": peak, "files_per_s": rate, "target": TARGET_FILES_PER_S, "pass": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
