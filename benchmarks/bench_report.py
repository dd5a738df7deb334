"""Thumbnail benchmark: ``convert.batch.report.thumbnail_png`` of a lazily read 512 x 512 x N CT series.

Every conversion job draws one thumbnail, so it must cost little next to the job:
target well under 0.1 s for a 512 x 512 x 300 CT (it reads only the middle slice of
the lazy volume). The series is :mod:`make_ct_series` (cached under ``benchmarks/data/``).
The series is read once (headers, lazy voxels), then ``thumbnail_png`` is timed
``--runs`` times in this process (the first call, which imports Pillow and the
renderer, is reported separately); the median is checked against the target.

Usage::

    python benchmarks/bench_report.py                 # 300 slices, 20 runs
    python benchmarks/bench_report.py --slices 1000 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGET_SECONDS = 0.1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)

    from make_ct_series import generate

    from convert import load
    from convert.batch.report import thumbnail_png

    folder = generate(args.slices, quiet=True)
    volume = load(folder)
    print(f"{folder.name}: {volume!r}")
    t0 = time.perf_counter()
    png = thumbnail_png(volume)
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        thumbnail_png(volume)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(f"thumbnail_png: first call {first * 1000:.1f} ms (imports included), then median {median * 1000:.1f} ms "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}) over {args.runs} runs; {len(png)} bytes PNG")
    ok = median < TARGET_SECONDS
    print(f"target median < {TARGET_SECONDS * 1000:.0f} ms: {'pass' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
