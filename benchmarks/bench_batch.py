"""Whole-archive runs (issue 15): peak memory on a large archive, ``--jobs 2`` and Dask vs dcm2niix.

Three measurements, each a whole process (``python -m convert convert ARCHIVE OUT``), side by side:

* **bounded memory**: a generated archive of ``--files`` files (default 50,000: 500 series of 100
  slices, 64 x 64, CT and MR in four orientations, ten patients) converted with ``--jobs 2``;
  the peak memory of the whole process tree (largest VmHWM, or summed PSS while several
  processes live: :func:`bench_dicom.tree_memory_bytes`). Target: <= 1 GB, whatever the size.
* **parallel**: the same archive with ``--jobs 1`` and ``--jobs 2``, next to dcm2niix
  (``-z y``, its parallel-gzip mode, and ``-z i``) over the same folder. The real-archive
  benchmark (``bench_archive.py``) times the default, which is ``--jobs`` = all cores.
* **Dask**: the same archive through ``--scheduler`` on a ``distributed.LocalCluster`` of 2
  worker processes with 1 thread each, started before the timing (a user points medconvert at
  a running cluster). Target: within 1.2x of ``--jobs 2``.

The archive is cached in ``benchmarks/data/batch-<files>/`` (git-ignored), generated once in
parallel (deterministic). Usage::

    python benchmarks/bench_batch.py                      # 50,000 files (~0.5 GB, ~1 min to generate)
    python benchmarks/bench_batch.py --files 5000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_dicom as bd  # noqa: E402
from make_ct_series import DATA_DIR  # noqa: E402

SLICES = 100
GENERATOR_VERSION = 1
MEMORY_TARGET_BYTES = 1 << 30
DASK_TARGET = 1.2


def _write_series(args: tuple[Path, int]) -> int:
    from convert.sample import SeriesSpec, write_series

    root, n = args
    orientations = {0: ((1, 0, 0), (0, 1, 0)), 1: ((0, 1, 0), (0, 0, -1)), 2: ((1, 0, 0), (0, 0, -1)),
                    3: ((0.866, 0.5, 0), (-0.5, 0.866, 0))}
    row, col = orientations[n % 4]
    modality = "CT" if n % 2 == 0 else "MR"
    patient = n % 10
    spec = SeriesSpec(rows=64, columns=64, slices=SLICES, pixel_spacing=(0.9, 0.9), slice_spacing=1.5,
                      row_cosine=row, column_cosine=col, modality=modality, series_number=n + 1,
                      description=f"{modality} series {n}", series_uid=f"2.25.{1000 + n}{patient:02d}77",
                      study_uid=f"2.25.{patient + 1}99", seed=n)
    return len(write_series(root / f"patient{patient:02d}" / f"series{n:04d}", spec))


def archive(n_files: int, data_dir: Path = DATA_DIR) -> Path:
    """The cached generated archive of at least ``n_files`` files (built when missing or stale)."""
    root = data_dir / f"batch-{n_files}"
    stamp = root / ".generator"
    if stamp.exists() and stamp.read_text() == str(GENERATOR_VERSION):
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    n_series = -(-n_files // SLICES)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        written = sum(pool.map(_write_series, [(root, n) for n in range(n_series)], chunksize=8))
    stamp.write_text(str(GENERATOR_VERSION))
    print(f"generated {written} files ({n_series} series) in {time.perf_counter() - t0:.0f} s: {root}",
          flush=True)
    return root


def _run(argv: list[str], out: Path, expect: int | None) -> bd.Run:
    shutil.rmtree(out, ignore_errors=True)
    return bd.run_once(argv, out, expect_outputs=expect, timeout_s=3600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50_000, help="archive size in files (default 50,000)")
    parser.add_argument("--runs", type=int, default=1, help="timed runs of each command (default 1)")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster run")
    parser.add_argument("--no-dcm2niix", action="store_true", help="skip dcm2niix")
    parser.add_argument("--work", type=Path, default=HERE / "results" / "batch-work", help="output folders")
    args = parser.parse_args(argv)

    source = archive(args.files)
    n_series = -(-args.files // SLICES)
    medconvert = [sys.executable, "-m", "convert", "convert", str(source)]
    commands: list[tuple[str, list[str] | None]] = [
        ("medconvert --jobs 1", medconvert + ["{out}", "--jobs", "1"]),
        ("medconvert --jobs 2", medconvert + ["{out}", "--jobs", "2"]),
    ]
    if not args.no_dcm2niix:
        d2n = bd._dcm2niix_binary()
        for mode in ("y", "i"):
            commands.append((f"dcm2niix -z {mode}", [d2n, "-z", mode, "-f", "%s_%d", "-o", "{out}", str(source)]))
    cluster = client = None
    if not args.no_dask:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=40)
        client = Client(cluster)
        commands.append(("medconvert --scheduler (Dask, 2 workers)",
                         medconvert + ["{out}", "--scheduler", cluster.scheduler_address]))
    results: dict[str, list[bd.Run]] = {}
    try:
        for label, command in commands:
            for n in range(args.runs):
                out = args.work / f"{label.split()[0]}-{len(results)}"
                argv_ = [str(out) if a == "{out}" else a for a in command]  # type: ignore[union-attr]
                run = _run(argv_, out, None)
                results.setdefault(label, []).append(run)
                print(f"{label}: {run.wall_s:.2f} s wall, {run.cpu_s:.2f} s CPU, peak {run.peak_mb:.0f} MB"
                      f"{'' if run.ok else ' FAILED: ' + run.error[-300:]}", flush=True)
    finally:
        if client is not None:
            client.close()
            cluster.close()

    def best(label: str) -> bd.Run | None:
        runs = [r for r in results.get(label, []) if r.ok]
        return min(runs, key=lambda r: r.wall_s) if runs else None

    print(f"\n## Whole-archive run: {args.files:,} files, {n_series} series (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})\n")
    jobs2 = best("medconvert --jobs 2")
    fastest_d2n = min((r for r in (best("dcm2niix -z y"), best("dcm2niix -z i")) if r), key=lambda r: r.wall_s,
                      default=None)
    print("| command | wall (s) | CPU (s) | peak memory (MB) | files/s | vs --jobs 2 | vs dcm2niix (faster mode) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label in results:
        run = best(label)
        if run is None:
            print(f"| {label} | FAILED | | | | | |")
            continue
        vs_jobs = f"{run.wall_s / jobs2.wall_s:.2f}x" if jobs2 else ""
        vs_d2n = f"{run.wall_s / fastest_d2n.wall_s:.2f}x" if fastest_d2n else ""
        print(f"| {label} | {run.wall_s:.2f} | {run.cpu_s:.2f} | {run.peak_mb:.0f} | "
              f"{args.files / run.wall_s:,.0f} | {vs_jobs} | {vs_d2n} |")
    print()
    verdicts = {}
    if jobs2:
        verdicts["peak memory <= 1 GB (--jobs 2)"] = (jobs2.peak_mb * 2**20 <= MEMORY_TARGET_BYTES,
                                                      f"{jobs2.peak_mb:.0f} MB")
    dask = best("medconvert --scheduler (Dask, 2 workers)")
    if dask and jobs2:
        verdicts["Dask within 1.2x of --jobs 2"] = (dask.wall_s <= DASK_TARGET * jobs2.wall_s,
                                                    f"{dask.wall_s / jobs2.wall_s:.2f}x")
    if jobs2 and fastest_d2n:
        verdicts["--jobs 2 <= 1.0x dcm2niix"] = (jobs2.wall_s <= fastest_d2n.wall_s,
                                                 f"{jobs2.wall_s / fastest_d2n.wall_s:.2f}x")
    for name, (ok, figure) in verdicts.items():
        print(f"- {name}: {figure} {'PASS' if ok else 'FAIL'}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"batch-{args.files}.json").write_text(json.dumps(
        {label: [r.__dict__ for r in runs] for label, runs in results.items()}, indent=1, default=str))
    return 0 if all(ok for ok, _ in verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
