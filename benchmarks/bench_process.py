"""Resampling benchmark: ``convert.process.resample`` against plain SimpleITK, time and peak memory.

A synthetic int16 CT (512 x 512 x N, 0.7 x 0.7 x 1.0 mm by default, as make_ct_series.py, intercept
-1024, axial LPS as DICOM) is resampled to 1 x 1 x 1 mm with linear
interpolation, float32 output, the same output grid for both:

* ``medconvert``: ``resample(volume, 1.0)`` on a Volume holding the int16 array;
* ``simpleitk``: what a notebook does: ``sitk.GetImageFromArray`` of the same
  array, ``sitk.Resample`` onto the same grid, ``sitk.GetArrayFromImage``.

Each variant runs in its own process (``--runs`` times, median wall time) so that
peak memory is its own: the process's ``VmHWM`` (peak resident set) minus its
resident size just before the input array was made, reported in MB and as a
multiple of the input volume's size (512*512*N*2 bytes), input included. The
outputs are compared (same shape and affine, values within 1e-3).

Usage::

    python benchmarks/bench_process.py                     # 300 slices, 3 runs
    python benchmarks/bench_process.py --slices 1000 --runs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0

variant, n, sz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
import SimpleITK as sitk
from convert.geometry import affine_from_geometry, lps_to_ras
from convert.volume import Meta, Volume
from convert.process import resample
from convert.process.geometry import output_grid
base = rss("VmRSS:")
rng = np.random.default_rng(0)
arr = np.empty((512, 512, n), np.int16, order="F")
slice_ = (rng.normal(40, 12, (512, 512)) + 1024).astype(np.int16)
for k in range(n):
    arr[:, :, k] = slice_ + (k % 50)
affine = lps_to_ras(affine_from_geometry((-179.0, -179.0, 0.0), (0.7, 0.7, sz), np.eye(3)))
volume = Volume(arr, affine, Meta(modality="CT"), intercept=-1024.0)
shape, out_affine = output_grid(volume, spacing=1.0)
t0 = time.perf_counter()
if variant == "medconvert":
    out = resample(volume, 1.0).voxels()
else:
    image = sitk.GetImageFromArray(arr.transpose())
    image.SetSpacing((0.7, 0.7, sz)); image.SetOrigin((-179.0, -179.0, 0.0))
    ref = Volume(np.zeros((1, 1, 1), np.int16), out_affine).to_sitk()
    result = sitk.Resample(image, list(shape), sitk.Transform(), sitk.sitkLinear,
                           ref.GetOrigin(), ref.GetSpacing(), ref.GetDirection(), 0.0, sitk.sitkFloat32)
    del image
    out = sitk.GetArrayFromImage(result).transpose()
    del result
    out += np.float32(-1024.0)
seconds = time.perf_counter() - t0
peak = rss("VmHWM:") - base
sample = [float(out[100, 100, 50]), float(out[200, 150, n // 3]), float(out.mean(dtype=np.float64))]
print(json.dumps({"seconds": seconds, "peak_bytes": peak, "input_bytes": arr.nbytes, "shape": list(out.shape),
                  "sample": sample}))
"""


def run(variant: str, slices: int, slice_mm: float) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, variant, str(slices), str(slice_mm)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--slice-mm", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"medconvert": [], "simpleitk": []}
    for _ in range(args.runs):  # interleaved: background load hits both alike
        for variant in results:
            results[variant].append(run(variant, args.slices, args.slice_mm))
    first = {v: r[0] for v, r in results.items()}
    assert first["medconvert"]["shape"] == first["simpleitk"]["shape"], first
    for a, b in zip(first["medconvert"]["sample"], first["simpleitk"]["sample"]):
        assert abs(a - b) < 1e-3, (first["medconvert"]["sample"], first["simpleitk"]["sample"])
    print(f"512x512x{args.slices} int16 (0.7 x 0.7 x {args.slice_mm} mm) -> 1 mm, linear, float32; "
          f"output {'x'.join(map(str, first['medconvert']['shape']))}; median of {args.runs} run(s)\n")
    print("| variant | seconds | peak MB | peak / input |\n|---|---|---|---|")
    summary = {}
    for variant, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = max(r["peak_bytes"] for r in runs)
        ratio = peak / runs[0]["input_bytes"]
        summary[variant] = {"seconds": seconds, "peak_mb": peak / 1e6, "peak_over_input": ratio}
        print(f"| {variant} | {seconds:.2f} | {peak / 1e6:.0f} | {ratio:.2f}x |")
    speed = summary["medconvert"]["seconds"] / summary["simpleitk"]["seconds"]
    ok = speed <= 1.2 and summary["medconvert"]["peak_over_input"] <= 3.0
    print(f"\nmedconvert / SimpleITK time: {speed:.2f} (target <= 1.2); "
          f"peak {summary['medconvert']['peak_over_input']:.2f}x input (target <= 3): {'PASS' if ok else 'FAIL'}")
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"process-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(summary, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
