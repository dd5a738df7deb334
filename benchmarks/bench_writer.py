"""NIfTI -> DICOM series benchmark: medconvert's writer against SimpleITK's series writer and nii2dcm.

Each write runs as a whole process (start-up and imports included) into a fresh folder, from a cached
512x512xN int16 CT volume in ``.nii`` (the torso phantom of ``make_ct_series.py``, converted once by
medconvert). For every tool: wall-clock seconds (median of ``--runs``), CPU seconds and peak memory
of the process tree (``bench_dicom.run_once``), the number of files written, and whether the files
read back (by medconvert's reader) give the input's voxels and world geometry.

Tools:

* ``medconvert convert ct.nii OUT --to dicom --modality CT``
* SimpleITK: the ImageSeriesWriter recipe of SimpleITK's "DICOM series from array" example (one
  ``WriteImage`` per slice with the slice's tags), as a ``python -c`` process;
* ``nii2dcm ct.nii OUT -d MR`` (the only type it offers besides SVR), when the ``nii2dcm`` command is
  on PATH or given with ``--nii2dcm PATH``. nii2dcm pins old numpy/pydicom, so install it in a
  virtual environment of its own (``python -m venv /tmp/n2d && /tmp/n2d/bin/pip install nii2dcm``).

Usage::

    python benchmarks/bench_writer.py --quick                      # 1 run, 300 slices
    python benchmarks/bench_writer.py --slices 300 600 --runs 3 --nii2dcm /tmp/n2d/bin/nii2dcm

Target: 600 slices in at most 5 s (whole process). Exit status 0 when medconvert meets it (or when
600 slices were not measured and 300 took at most 2.5 s).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dicom import medconvert_argv, run_once  # noqa: E402  (the one process runner)
from make_ct_series import DATA_DIR, generate  # noqa: E402

TARGET_S_PER_600 = 5.0

SITK_WRITER = r"""
import sys, time
import SimpleITK as sitk
image = sitk.Cast(sitk.ReadImage(sys.argv[1]), sitk.sitkInt16)  # HU (the .nii's intercept applied): integers
out = sys.argv[2]
writer = sitk.ImageFileWriter()
writer.KeepOriginalImageUIDOn()
now_date, now_time = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
direction = image.GetDirection()
series_tags = [("0008|0031", now_time), ("0008|0021", now_date), ("0008|0008", "DERIVED\\SECONDARY"),
               ("0020|000d", "2.25.1" + now_date + now_time), ("0020|000e", "2.25.2" + now_date + now_time),
               ("0020|0037", "\\".join(map(str, (direction[0], direction[3], direction[6],
                                                  direction[1], direction[4], direction[7])))),
               ("0008|103e", "sitk"), ("0008|0060", "CT")]
for i in range(image.GetDepth()):
    piece = image[:, :, i]
    for tag, value in series_tags:
        piece.SetMetaData(tag, value)
    piece.SetMetaData("0008|0012", now_date)
    piece.SetMetaData("0008|0013", now_time)
    piece.SetMetaData("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, i)))))
    piece.SetMetaData("0020|0013", str(i + 1))
    writer.SetFileName(f"{out}/{i:05d}.dcm")
    writer.Execute(piece)
"""


def input_nifti(n_slices: int) -> Path:
    """``benchmarks/data/ct_512x512x<N>.nii``: the cached CT phantom series converted once by medconvert."""
    import subprocess

    target = DATA_DIR / f"ct_512x512x{n_slices}.nii"
    if not target.exists():
        series = generate(n_slices)
        subprocess.run(medconvert_argv() + ["convert", str(series), str(target), "--no-sidecar"], check=True)
    return target


def check(folder: Path, source: Path) -> str:
    """"ok" when the DICOM files under ``folder`` read back (our reader) as ``source`` in world space."""
    import nibabel as nib
    import numpy as np

    import convert

    try:
        files = [p for p in folder.rglob("*") if p.is_file()]
        back = convert.load(files[0].parent if files else folder)
        a = nib.as_closest_canonical(nib.Nifti1Image(back.scaled(), back.affine))
        b = nib.as_closest_canonical(nib.load(str(source)))
    except Exception as exc:  # a tool's output we cannot read is a result, not a crash
        return f"unreadable: {type(exc).__name__}"
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    geometry = "geometry ok" if np.allclose(a.affine, b.affine, atol=1e-3) else "GEOMETRY WRONG"
    values = "values exact" if np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)) else "values differ"
    return f"{geometry}, {values}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[300, 600])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run, 300 slices")
    parser.add_argument("--nii2dcm", default=shutil.which("nii2dcm"), help="nii2dcm command (default: on PATH)")
    args = parser.parse_args(argv)
    slices, runs = ([300], 1) if args.quick else (args.slices, args.runs)
    tools = {"medconvert": lambda src, out: medconvert_argv() + ["convert", str(src), str(out / "dcm"), "--to",
                                                                 "dicom", "--modality", "CT"],
             "SimpleITK ImageSeriesWriter": lambda src, out: [sys.executable, "-c", SITK_WRITER, str(src), str(out)]}
    if args.nii2dcm:
        tools["nii2dcm -d MR"] = lambda src, out: [args.nii2dcm, str(src), str(out), "-d", "MR"]
    ok = True
    print("| slices | tool | wall s (median) | CPU s | peak MB | files | read back by medconvert |")
    print("|---|---|---|---|---|---|---|")
    for n in slices:
        source = input_nifti(n)
        for name, make_argv in tools.items():
            times, result = [], None
            for _ in range(runs):
                out = Path(tempfile.mkdtemp(prefix="bench_writer_")) / "out"
                result = run_once(make_argv(source, out), out, expect_outputs=None)
                times.append(result.wall_s)
                n_files = sum(1 for p in out.rglob("*") if p.is_file())
                verdict = check(out, source) if result.ok else f"failed: {result.error}"
                shutil.rmtree(out.parent, ignore_errors=True)
            assert result is not None
            wall = statistics.median(times)
            print(f"| {n} | {name} | {wall:.2f} | {result.cpu_s:.2f} | {result.peak_mb:.0f} | {n_files} | {verdict} |")
            if name == "medconvert":
                limit = TARGET_S_PER_600 * n / 600
                ok = ok and result.ok and wall <= limit
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
