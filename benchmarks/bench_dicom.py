"""DICOM series -> NIfTI benchmark: medconvert against dcm2niix, dicom2nifti and SimpleITK.

Each conversion runs as a whole process (``subprocess``; start-up and imports
included), into a fresh output folder, reading a cached synthetic 512x512 int16
CT series (see ``make_ct_series.py``). For every tool/output pair we record:

* wall-clock seconds (median of ``--runs`` timed runs; before them one untimed
  warm-up run per tool so every tool sees warm page cache and compiled
  bytecode; ``--quick`` skips the warm-up);
* CPU seconds (user + sys, from ``wait4``; less sensitive to a busy machine);
* peak memory of the whole process tree in MB, sampled every 10 ms from
  ``/proc`` (tree re-listed every 50 ms): the larger of the biggest single
  process's exact high-water RSS (``VmHWM``, counted from its ``exec``) and,
  while the tree has several processes, their summed proportional set size
  (``Pss``: catches e.g. dcm2niix + pigz without counting pages shared after a
  fork twice), compared with the volume's size in memory (512*512*N*2 bytes).
  ``ru_maxrss`` from ``wait4`` is *not* used: after (v)fork + exec it inherits
  the benchmark process's own high-water mark.

Runs are interleaved round-robin across tools so background load hits all
tools alike. Before timing anything the warm-up outputs are checked in world
space against ``dcm2niix -z n`` (nibabel, closest canonical orientation:
same shape, affine within 1e-3 mm, same rescaled values) so we never time a
wrong conversion.

Usage::

    python benchmarks/bench_dicom.py --quick                 # 1 run, 300 slices
    python benchmarks/bench_dicom.py --slices 300 1000 --runs 5
    python benchmarks/bench_dicom.py --tools medconvert dcm2niix --runs 3

Results are printed as Markdown tables (with PASS/FAIL against the targets)
and saved as JSON under ``benchmarks/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_ct_series import generate  # noqa: E402

RESULTS_DIR = HERE / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")
BIN_DIR = Path(sys.executable).parent
RUN_TIMEOUT_S = 1800.0

#: Targets (medconvert relative to peers); checked per series length.
TARGET_GZ_VS_DCM2NIIX_I = 1.0
TARGET_NII_VS_DCM2NIIX_N = 1.5
TARGET_SPEEDUP_VS_DICOM2NIFTI = 4.0
TARGET_PEAK_MEM_VS_VOLUME = 1.3

SITK_SCRIPT = """
import sys
import SimpleITK as sitk
src, out = sys.argv[1], sys.argv[2]
reader = sitk.ImageSeriesReader()
reader.SetFileNames(reader.GetGDCMSeriesFileNames(src))
sitk.WriteImage(reader.Execute(), out, useCompression=out.endswith(".gz"))
"""


# --------------------------------------------------------------------------- tools
def _script(name: str) -> str:
    """A console script next to this interpreter (bypasses slow pyenv shims), else PATH."""
    candidate = BIN_DIR / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(name)
    return found


def _dcm2niix_binary() -> str:
    """The native dcm2niix binary (the pip package's Python wrapper adds ~60 ms of start-up)."""
    try:
        import dcm2niix  # type: ignore[import-untyped]

        return str(dcm2niix.bin)
    except (ImportError, AttributeError):
        return _script("dcm2niix")


#: argv prefix that runs medconvert; ``--snapshot`` swaps it for ``python -m convert``
#: with PYTHONPATH pointing at an exported git revision.
MEDCONVERT: list[str] = []
SNAPSHOT_ENV: dict[str, str] = {}


def medconvert_argv() -> list[str]:
    """How to start medconvert: the console script, or the snapshot chosen with ``--snapshot``."""
    return MEDCONVERT or [_script("medconvert")]


def export_snapshot(rev: str) -> tuple[Path, str]:
    """Export ``convert/`` at git revision ``rev`` to ``benchmarks/results/snapshot-<sha>``.

    Measuring a fixed revision keeps results meaningful while others edit the
    working tree (the package is installed editable). Returns (folder, sha).
    """
    root = HERE.parent
    sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", rev], capture_output=True, text=True,
                         check=True).stdout.strip()
    target = RESULTS_DIR / f"snapshot-{sha}"
    if not (target / "convert" / "__init__.py").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", sha, "convert"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target, sha


def precompile_medconvert(package_dir: Path) -> None:
    """Write ``.pyc`` files for medconvert's sources, like ``pip install`` does for a wheel.

    Peers installed from wheels already have bytecode in site-packages; an
    editable checkout or a git snapshot does not, and with
    ``PYTHONDONTWRITEBYTECODE`` set (as in some containers) every run would
    recompile medconvert's modules (~0.05-0.1 s). Benchmark what users get.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package_dir)], check=False,
                   stdout=subprocess.DEVNULL)


@dataclass(frozen=True)
class Tool:
    """One tool/output combination: how to run it and where its output lands."""

    key: str  # unique, e.g. "dcm2niix -z i"
    tool: str  # family: medconvert, dcm2niix, dicom2nifti, simpleitk
    ext: str  # ".nii" or ".nii.gz"
    argv: Callable[[Path, Path], list[str]]  # (src folder, out folder) -> argv


def all_tools() -> list[Tool]:
    """Every benchmarked tool/output pair, in table order."""
    d2n = _dcm2niix_binary()
    tools = [
        Tool("medconvert", "medconvert", ".nii",
             lambda s, o: medconvert_argv() + ["convert", str(s), str(o / "out.nii")]),
        Tool("medconvert", "medconvert", ".nii.gz",
             lambda s, o: medconvert_argv() + ["convert", str(s), str(o / "out.nii.gz")]),
        Tool("dcm2niix -z n", "dcm2niix", ".nii", lambda s, o: [d2n, "-z", "n", "-f", "out", "-o", str(o), str(s)]),
        Tool("dcm2niix -z i", "dcm2niix", ".nii.gz",
             lambda s, o: [d2n, "-z", "i", "-f", "out", "-o", str(o), str(s)]),
        Tool("dcm2niix -z y", "dcm2niix", ".nii.gz",
             lambda s, o: [d2n, "-z", "y", "-f", "out", "-o", str(o), str(s)]),
        Tool("dicom2nifti -C", "dicom2nifti", ".nii", lambda s, o: [_script("dicom2nifti"), "-C", str(s), str(o)]),
        Tool("dicom2nifti", "dicom2nifti", ".nii.gz", lambda s, o: [_script("dicom2nifti"), str(s), str(o)]),
        Tool("SimpleITK", "simpleitk", ".nii", lambda s, o: [sys.executable, "-c", SITK_SCRIPT, str(s), str(o / "out.nii")]),
        Tool("SimpleITK", "simpleitk", ".nii.gz",
             lambda s, o: [sys.executable, "-c", SITK_SCRIPT, str(s), str(o / "out.nii.gz")]),
    ]
    return tools


def tool_versions() -> dict[str, str]:
    """Versions of everything measured (for the record)."""
    versions: dict[str, str] = {"python": platform.python_version()}
    try:
        out = subprocess.run([_dcm2niix_binary(), "--version"], capture_output=True, text=True, timeout=30)
        versions["dcm2niix"] = (out.stdout + out.stderr).strip().splitlines()[-1]
    except (OSError, IndexError, subprocess.SubprocessError):
        versions["dcm2niix"] = "missing"
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("medconvert", "dicom2nifti", "SimpleITK", "pydicom", "nibabel", "numpy", "isal"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "missing"
    try:
        root = HERE.parent
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "convert"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        versions["medconvert"] += f" (git {head}{', uncommitted changes in convert/' if dirty else ''})"
    except (OSError, subprocess.SubprocessError):
        pass
    versions["pigz"] = shutil.which("pigz") or "missing (dcm2niix -z y falls back to internal gzip)"
    return versions


def machine_info() -> dict[str, str]:
    """CPU model, core count and memory of this machine."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": mem, "os": platform.platform()}


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --------------------------------------------------------------------------- measuring
def _children_map() -> dict[int, list[int]]:
    """ppid -> [pid] for every process (Linux /proc; no psutil needed)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    return children


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants (one scan of ``/proc``)."""
    children = _children_map()
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def _status_kb(pid: int, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory_bytes(pids: list[int]) -> int:
    """Memory held by the process tree ``pids`` right now, in bytes.

    The largest ``VmHWM`` (the kernel's exact peak RSS of one process since its
    ``exec``) and, when the tree has several processes, the summed ``Pss``
    (proportional set size: pages shared between parent and child after a
    fork are counted once, not twice as summed RSS would).
    """
    hwm = max((_status_kb(pid, b"VmHWM:") for pid in pids), default=0)
    pss = sum(_pss_kb(pid) for pid in pids) if len(pids) > 1 else 0
    return max(hwm, pss) * 1024


@dataclass
class Run:
    """One measured process run."""

    wall_s: float
    cpu_s: float
    peak_mb: float
    ok: bool
    error: str = ""
    output: str = ""
    n_outputs: int = 0
    #: most processes alive at once in the measured tree (the command and its workers)
    processes: int = 0


def run_once(argv: list[str], out_dir: Path, timeout_s: float = RUN_TIMEOUT_S,
             expect_outputs: int | None = 1) -> Run:
    """Run ``argv`` as a process; wall clock, CPU time and peak tree RSS.

    ``out_dir`` is created fresh (and must not exist). The run succeeds when the
    process exits with 0 and ``expect_outputs`` ``*.nii``/``*.nii.gz`` files
    appear anywhere under ``out_dir`` (``None``: any number, checked by the
    caller). ``Run.output`` is the first of them (sorted), ``Run.n_outputs``
    their number.
    """
    out_dir.mkdir(parents=True)
    peak, most = [0], [1]
    done = threading.Event()
    t0 = time.perf_counter()
    env = {**os.environ, **SNAPSHOT_ENV} if SNAPSHOT_ENV else None
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=env)

    def poll() -> None:  # every 10 ms; the process tree itself is re-listed every 50 ms (cheaper)
        tick, pids = 0, [proc.pid]
        while not done.is_set():
            if tick % 5 == 0:
                pids = tree_pids(proc.pid)
                most[0] = max(most[0], len(pids))
            peak[0] = max(peak[0], tree_memory_bytes(pids))
            tick += 1
            done.wait(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stderr_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    deadline = t0 + timeout_s
    status = rusage = None
    try:
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, 9)
                pid, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
    except BaseException:  # Ctrl-C / SIGTERM: never leave a converter running
        try:
            os.killpg(proc.pid, 9)
            os.wait4(proc.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        raise
    wall = time.perf_counter() - t0
    done.set()
    poller.join()
    reader.join(timeout=5)
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_bytes = peak[0]
    outputs = sorted(p for p in out_dir.rglob("*") if p.name.endswith((".nii", ".nii.gz")) and p.is_file())
    err = b"".join(stderr_chunks).decode(errors="replace").strip()
    ok = proc.returncode == 0 and (expect_outputs is None or len(outputs) == expect_outputs)
    error = ""
    if not ok:
        last = err.splitlines()[-1] if err else ""
        error = f"exit {proc.returncode}, {len(outputs)} NIfTI output(s): {last}"[:300]
    return Run(wall, rusage.ru_utime + rusage.ru_stime, peak_bytes / 2**20, ok, error,
               str(outputs[0]) if outputs else "", len(outputs), most[0])


# --------------------------------------------------------------------------- verification
def _canonical(path: Path):  # type: ignore[no-untyped-def]
    """(raw array, slope, intercept, affine) in the closest canonical (RAS+) orientation."""
    import nibabel as nib
    import numpy as np

    img = nib.load(str(path))
    slope, inter = img.dataobj.slope, img.dataobj.inter
    raw = np.asanyarray(img.dataobj.get_unscaled())
    while raw.ndim > 3 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    plain = nib.Nifti1Image(raw, img.affine)
    canon = nib.as_closest_canonical(plain)
    return np.asanyarray(canon.dataobj), float(slope), float(inter), canon.affine


def _is_sheared(affine) -> bool:  # type: ignore[no-untyped-def]
    """Is the slice axis of ``affine`` not orthogonal to the in-plane axes (gantry tilt kept as shear)?"""
    import numpy as np

    cols = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return abs(float(cols[:, 2] @ cols[:, 0])) > 1e-4 or abs(float(cols[:, 2] @ cols[:, 1])) > 1e-4


def compare_world(path: Path, reference: Path, *, shear_ok: bool = False,
                  rtol: float = 0.0) -> tuple[bool, str]:
    """Do two NIfTI files hold the same image in world space? (ok, human-readable detail).

    Same shape in the closest canonical orientation, affines within 1e-3 mm,
    rescaled values equal (within 1e-3, or ``rtol`` times the reference's
    largest magnitude when that is larger). ``shear_ok``: when either affine is
    sheared (gantry tilt kept as shear), only the in-plane axes and the origin
    must agree (dcm2niix's slice vector of a tilted series differs; see
    tests/test_conformance.py).
    """
    import numpy as np

    a, sa, ia, aff_a = _canonical(path)
    b, sb, ib, aff_b = _canonical(reference)
    if a.shape != b.shape:
        return False, f"shape {a.shape} != {b.shape}"
    aff_err = float(np.abs(aff_a - aff_b).max())
    note = ""
    if aff_err > 1e-3:
        in_plane = float(np.abs(aff_a[:, [0, 1, 3]] - aff_b[:, [0, 1, 3]]).max())
        if not (shear_ok and (_is_sheared(aff_a) or _is_sheared(aff_b)) and in_plane <= 1e-3):
            return False, f"affine differs by up to {aff_err:.3g} mm"
        note = f"; sheared: in-plane axes and origin agree, slice axis differs by up to {aff_err:.3g} mm"
        aff_err = in_plane
    if (sa, ia) == (sb, ib) and a.dtype == b.dtype:
        same = bool(np.array_equal(a, b))
        worst = 0.0 if same else float(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())
    else:
        worst = biggest = 0.0
        for k in range(a.shape[2]):  # slab-wise: no full-volume float copies
            va = a[:, :, k].astype(np.float64) * sa + ia
            vb = b[:, :, k].astype(np.float64) * sb + ib
            worst = max(worst, float(np.abs(va - vb).max()))
            biggest = max(biggest, float(np.abs(vb).max()))
        same = worst <= max(1e-3, rtol * biggest)
    if not same:
        return False, f"values differ by up to {worst:g}"
    return True, f"same (affine err {aff_err:.1e} mm{', values within ' + format(worst, '.2g') if worst else ''}{note})"


# --------------------------------------------------------------------------- report
@dataclass
class Row:
    """All runs of one tool/output for one series length."""

    key: str
    tool: str
    ext: str
    runs: list[Run] = field(default_factory=list)
    verified: str = ""
    out_mb: float = 0.0

    @property
    def good(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    @property
    def failed(self) -> str:
        bad = [r for r in self.runs if not r.ok]
        return bad[0].error if bad else ""

    def median(self, attr: str) -> float:
        vals = [getattr(r, attr) for r in self.good]
        return statistics.median(vals) if vals else float("nan")


def _fmt(x: float, spec: str = ".2f") -> str:
    return "n/a" if x != x else format(x, spec)


def render(n_slices: int, rows: list[Row], runs: int, warmup: bool) -> tuple[str, dict[str, object]]:
    """Markdown table + targets for one series length; also a JSON-ready verdict dict."""
    volume_mb = 512 * 512 * n_slices * 2 / 2**20
    by = {(r.key, r.ext): r for r in rows}
    ref = {".nii": by.get(("dcm2niix -z n", ".nii")), ".nii.gz": by.get(("dcm2niix -z i", ".nii.gz"))}
    lines = [
        f"### {n_slices} slices (512x512 int16, volume {volume_mb:.0f} MB in memory)",
        "",
        f"{runs} timed run(s) per tool{', after 1 untimed warm-up' if warmup else ''}; median wall time; "
        "ratio = wall / dcm2niix (`-z n` for .nii, `-z i` for .nii.gz).",
        "",
        "| tool | output | median s | min-max s | CPU s | ratio | peak MB | peak / volume | output MB | world space vs dcm2niix |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        base = ref[r.ext]
        wall = r.median("wall_s")
        ratio = wall / base.median("wall_s") if base and base.good else float("nan")
        peak = r.median("peak_mb")
        good = r.good
        spread = f"{min(x.wall_s for x in good):.2f}-{max(x.wall_s for x in good):.2f}" if good else "n/a"
        verified = r.verified if not r.failed else f"FAILED: {r.failed}"
        lines.append(
            f"| {r.key} | {r.ext} | {_fmt(wall)} | {spread} | {_fmt(r.median('cpu_s'))} | {_fmt(ratio)} | "
            f"{_fmt(peak, '.0f')} | {_fmt(peak / volume_mb)} | {_fmt(r.out_mb or float('nan'), '.0f')} | {verified} |"
        )

    def med(key: str, ext: str, attr: str = "wall_s") -> float:
        row = by.get((key, ext))
        return row.median(attr) if row else float("nan")

    nan = float("nan")
    checks: list[tuple[str, float, float, bool, float, float]] = []  # label, value, limit, ok, cpu, paired

    def check(label: str, value: float, limit: float, cpu_value: float = nan, paired_value: float = nan,
              higher_is_better: bool = False) -> None:
        ok = value == value and (value >= limit if higher_is_better else value <= limit)
        checks.append((label, value, limit, ok, cpu_value, paired_value))

    def rel(a: str, a_ext: str, b: str, b_ext: str, attr: str = "wall_s") -> float:
        return med(a, a_ext, attr) / med(b, b_ext, attr)

    def paired(a: str, a_ext: str, b: str, b_ext: str) -> float:
        """Median over rounds of (a's wall / b's wall in the same round): robust to load drifting."""
        ra, rb = by.get((a, a_ext)), by.get((b, b_ext))
        if ra is None or rb is None:
            return nan
        ratios = [x.wall_s / y.wall_s for x, y in zip(ra.runs, rb.runs) if x.ok and y.ok and y.wall_s > 0]
        return statistics.median(ratios) if ratios else nan

    def pair_check(label: str, a: str, a_ext: str, b: str, b_ext: str, limit: float,
                   higher_is_better: bool = False) -> None:
        check(label, rel(a, a_ext, b, b_ext), limit, rel(a, a_ext, b, b_ext, "cpu_s"), paired(a, a_ext, b, b_ext),
              higher_is_better)

    pair_check(".nii.gz wall <= 1.0x dcm2niix -z i", "medconvert", ".nii.gz", "dcm2niix -z i", ".nii.gz",
               TARGET_GZ_VS_DCM2NIIX_I)
    pair_check(".nii wall <= 1.5x dcm2niix -z n", "medconvert", ".nii", "dcm2niix -z n", ".nii",
               TARGET_NII_VS_DCM2NIIX_N)
    pair_check(">= 4x faster than dicom2nifti (.nii.gz)", "dicom2nifti", ".nii.gz", "medconvert", ".nii.gz",
               TARGET_SPEEDUP_VS_DICOM2NIFTI, True)
    pair_check(">= 4x faster than dicom2nifti -C (.nii)", "dicom2nifti -C", ".nii", "medconvert", ".nii",
               TARGET_SPEEDUP_VS_DICOM2NIFTI, True)
    for ext in (".nii", ".nii.gz"):
        check(f"peak memory ({ext}) <= 1.3x volume", med("medconvert", ext, "peak_mb") / volume_mb,
              TARGET_PEAK_MEM_VS_VOLUME)
    mc_rows = [by.get(("medconvert", e)) for e in (".nii", ".nii.gz")]
    correct = all(r is not None and r.good and r.verified.startswith("same") for r in mc_rows)
    lines += ["", "| target (medconvert) | measured | limit | result | same ratio on CPU seconds "
              "| median of per-round ratios |", "|---|---:|---:|---|---:|---:|"]
    for label, value, limit, ok, cpu_value, paired_value in checks:
        cpu_text = f"{cpu_value:.2f}x" if cpu_value == cpu_value else ""
        paired_text = f"{paired_value:.2f}x" if paired_value == paired_value else ""
        lines.append(f"| {label} | {_fmt(value)}x | {limit:g}x | {'PASS' if ok else 'FAIL'} | {cpu_text} "
                     f"| {paired_text} |")
    lines.append(f"| output equals dcm2niix in world space | {'yes' if correct else 'no'} | | "
                 f"{'PASS' if correct else 'FAIL'} | | |")
    verdict = {label: {"value": value, "limit": limit, "pass": ok, "cpu_ratio": cpu, "paired_ratio": pr}
               for label, value, limit, ok, cpu, pr in checks}
    verdict["world space equals dcm2niix"] = {"pass": correct}
    return "\n".join(lines), verdict


# --------------------------------------------------------------------------- profiling
def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``: merge lines of one function."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else where
    return f"{name} ({short})"


def summarize_pyspy(raw: Path, top: int = 20) -> str:
    """Inclusive and self sample shares per function from py-spy's raw (collapsed) output."""
    from collections import Counter

    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = imports = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        if any(f.startswith("_find_and_load ") for f in frames):
            imports += count
        for name in set(frames):
            inclusive[name] += count
        self_time[frames[-1]] += count
    if not total:
        return f"{raw}: no samples"
    out = [f"{raw.name}: {total} samples; imports {100 * imports / total:.0f}% of samples", "",
           "inclusive (function and everything it calls):"]
    ranked = [(n, c) for n, c in inclusive.most_common() if "<frozen" not in n][:top]
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in ranked]
    out += ["", "self (time in the function's own code, incl. C calls it makes):"]
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in self_time.most_common(top)]
    return "\n".join(out)


def profile_medconvert(n_slices: int, work: Path, rate: int = 250) -> str:
    """Run ``medconvert convert`` under py-spy (.nii and .nii.gz); returns a text summary.

    The raw profiles (``benchmarks/results/profile-<N>-<ext>.txt``, collapsed
    stacks, loadable by speedscope or flamegraph.pl) are kept.
    """
    spy = shutil.which("py-spy") or str(BIN_DIR / "py-spy")
    if not Path(spy).exists():
        return "py-spy is not installed (pip install py-spy)"
    src = generate(n_slices)
    texts = []
    for ext in (".nii", ".nii.gz"):
        out_dir = work / f"profile-{n_slices}{ext}"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        raw = RESULTS_DIR / f"profile-{n_slices}{ext.replace('.', '-')}.txt"
        argv = [spy, "record", "-r", str(rate), "-f", "raw", "-o", str(raw), "--",
                *medconvert_argv(), "convert", str(src), str(out_dir / f"out{ext}")]
        t0 = time.perf_counter()
        env = {**os.environ, **SNAPSHOT_ENV} if SNAPSHOT_ENV else None
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not raw.exists():
            texts.append(f"{ext}: py-spy run failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
            continue
        texts.append(f"## medconvert {n_slices} slices -> {ext} (wall {wall:.2f} s under py-spy at {rate} Hz)\n"
                     + summarize_pyspy(raw))
        shutil.rmtree(out_dir, ignore_errors=True)
    return "\n\n".join(texts)


# --------------------------------------------------------------------------- main
def bench_series(n_slices: int, tools: list[Tool], runs: int, warmup: bool,
                 work: Path) -> tuple[list[Row], dict[int, Path]]:
    """Measure every tool on the ``n_slices`` series; runs interleaved round-robin.

    Returns the rows (table order) and, per row index, the output of its first
    successful run (kept on disk for the world-space check). A tool that fails
    once is not run again for this series.
    """
    src = generate(n_slices)
    rows = [Row(t.key, t.tool, t.ext) for t in tools]
    first_outputs: dict[int, Path] = {}
    rounds = (["warm-up"] if warmup else []) + [f"run {i + 1}" for i in range(runs)]
    for label in rounds:
        for idx, (tool, row) in enumerate(zip(tools, rows)):
            if row.failed:
                continue
            out_dir = work / f"{n_slices}-{idx}-{label.replace(' ', '')}"
            shutil.rmtree(out_dir, ignore_errors=True)
            run = run_once(tool.argv(src, out_dir), out_dir)
            status = f"{run.wall_s:7.2f} s {run.peak_mb:7.0f} MB" if run.ok else f"FAILED {run.error}"
            print(f"  [{n_slices}] {label:8s} {tool.key:15s} {tool.ext:7s} {status}", file=sys.stderr, flush=True)
            if label != "warm-up" or not run.ok:
                row.runs.append(run)  # a failing warm-up is reported too
            if run.ok and idx not in first_outputs:
                first_outputs[idx] = Path(run.output)
                row.out_mb = Path(run.output).stat().st_size / 2**20
            else:
                shutil.rmtree(out_dir, ignore_errors=True)
    return rows, first_outputs


def rerender(path: Path) -> str:
    """The Markdown report of a saved JSON result, rendered with the current table code."""
    data = json.loads(Path(path).read_text())
    info = data["info"]
    out = [f"machine: {info['machine']['cpu']}, {info['machine']['cores']} cores, {info['machine']['memory']}",
           "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())]
    for n, series in data["series"].items():
        rows = []
        for r in series["rows"]:
            runs = [Run(**{k: x[k] for k in ("wall_s", "cpu_s", "peak_mb", "ok", "error", "output")}) for x in r["runs"]]
            rows.append(Row(r["key"], r["tool"], r["ext"], runs, r.get("verified", ""), r.get("out_mb", 0.0)))
        out += ["", render(int(n), rows, int(info["runs"]), bool(info["warmup"]))[0]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import signal

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(description="DICOM -> NIfTI benchmark (medconvert vs peers).")
    parser.add_argument("--slices", type=int, nargs="+", default=[300, 1000], help="series lengths (default 300 1000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool (default 5)")
    parser.add_argument("--quick", action="store_true", help="1 run, 300 slices, no warm-up: a fast sanity check")
    parser.add_argument("--tools", nargs="+", choices=["medconvert", "dcm2niix", "dicom2nifti", "simpleitk"],
                        help="only these tool families (default all)")
    parser.add_argument("--keep", action="store_true", help="keep the output files (benchmarks/results/work)")
    parser.add_argument("--from-json", type=Path, metavar="RESULTS_JSON",
                        help="re-render the tables of a saved run (benchmarks/results/dicom-*.json) and exit")
    parser.add_argument("--snapshot", metavar="REV",
                        help="measure medconvert at this git revision (e.g. HEAD), exported with git archive, "
                             "instead of the (editable, possibly changing) working tree")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing: profile medconvert with py-spy on each --slices series")
    args = parser.parse_args(argv)
    if args.from_json:
        print(rerender(args.from_json))
        return 0
    if args.snapshot:
        folder, sha = export_snapshot(args.snapshot)
        MEDCONVERT[:] = [sys.executable, "-P", "-m", "convert"]  # -P: no cwd on sys.path
        SNAPSHOT_ENV["PYTHONPATH"] = str(folder) + os.pathsep + os.environ.get("PYTHONPATH", "")
        print(f"medconvert: git snapshot {sha} in {folder}", file=sys.stderr)
    precompile_medconvert(Path(folder) / "convert" if args.snapshot else HERE.parent / "convert")
    if args.profile:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        work = RESULTS_DIR / "work"
        for n in ([300] if args.quick else args.slices):
            print(profile_medconvert(n, work))
        shutil.rmtree(work, ignore_errors=True)
        return 0
    if args.quick:
        args.slices, args.runs = [300], 1
    warmup = not args.quick
    tools = [t for t in all_tools() if not args.tools or t.tool in args.tools]
    if "dcm2niix" not in {t.tool for t in tools}:
        tools += [t for t in all_tools() if t.key == "dcm2niix -z n"]  # the world-space reference
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    work = RESULTS_DIR / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    versions = tool_versions()
    if args.snapshot:
        versions["medconvert"] = versions["medconvert"].split(" (")[0] + f" (git snapshot {sha}, python -m convert)"
    info = {"machine": machine_info(), "versions": versions, "runs": args.runs, "warmup": warmup,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"machine: {info['machine']}", file=sys.stderr)
    print(f"versions: {info['versions']}", file=sys.stderr)
    report = [f"machine: {info['machine']['cpu']}, {info['machine']['cores']} cores, {info['machine']['memory']}, "
              f"load average at start {_loadavg()}",
              "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())]
    results: dict[str, object] = {"info": info, "series": {}}
    all_pass = True
    for n in args.slices:
        print(f"series: {n} slices", file=sys.stderr)
        rows, first = bench_series(n, tools, args.runs, warmup, work)
        ref_idx = next((i for i, t in enumerate(tools) if t.key == "dcm2niix -z n"), None)
        ref_path = first.get(ref_idx) if ref_idx is not None else None
        for idx, row in enumerate(rows):
            if idx not in first:
                row.verified = "no output"
            elif ref_path is None:
                row.verified = "no dcm2niix reference"
            elif idx == ref_idx:
                row.verified = "reference"
            else:
                ok, detail = compare_world(first[idx], ref_path)
                row.verified = detail if ok else f"DIFFERENT: {detail}"
        table, verdict = render(n, rows, args.runs, warmup)
        all_pass = all_pass and all(v["pass"] for v in verdict.values())  # type: ignore[index]
        report += ["", table]
        results["series"][str(n)] = {  # type: ignore[index]
            "rows": [{**{k: v for k, v in asdict(r).items() if k != "runs"}, "runs": [asdict(x) for x in r.runs],
                      "median_wall_s": r.median("wall_s"), "median_peak_mb": r.median("peak_mb")} for r in rows],
            "verdict": verdict,
        }
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
    report.append(f"\nload average at end {_loadavg()} (a load above the core count means timings are noisy)")
    text = "\n".join(report)
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    (RESULTS_DIR / f"dicom-{stamp}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS_DIR / f"dicom-{stamp}.md").write_text(text + "\n")
    print(f"\nsaved {RESULTS_DIR / f'dicom-{stamp}.md'} and .json", file=sys.stderr)
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
