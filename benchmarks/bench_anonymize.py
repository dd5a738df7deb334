"""De-identification benchmark: ``medconvert anonymize`` against dicognito, deid and ``cp -r``.

Every tool runs as a whole process (``subprocess``: interpreter start-up and imports included),
into a fresh output folder, on the same cached tree of synthetic 512x512 int16 CT files whose
headers carry the full PHI of ``fixtures/phi_corpus.py`` (names in four character sets, private
blocks, nested sequences, overlays...). Wall-clock seconds are the median of ``--runs`` timed runs;
runs are interleaved round-robin across tools, after one untimed warm-up per tool (page cache,
bytecode), so background load hits all tools alike.

Tools:

* ``medconvert``: ``python -m convert anonymize SRC DST --key KEYFILE`` (default profile, all cores)
  with this checkout first on ``PYTHONPATH``, so the code beside this script is measured (the
  ``medconvert`` on ``PATH`` may be another tree's, behind a pyenv shim); its bytecode is compiled
  first (``compileall``), as a wheel install does;
* ``dicognito``: ``python -m dicognito --output-directory DST --quiet SRC`` (writes copies; the
  source is never touched);
* ``deid``: a subprocess running pydicom/deid's ``replace_identifiers`` with its default recipe
  (``save=True, output_folder=DST``), the documented Python route;
* ``cp``: ``cp -r SRC DST``, the floor (copying the bytes, no parsing).

Targets (issue 4): medconvert >= 3x dicognito's files/s, and within 1.5x of ``cp -r``. Besides the
medians, each tool's CPU seconds (user + system of its processes), the load average before and
after, and the median of per-round paired ratios (medconvert / other tool, same round) are
printed: on a shared machine the paired ratio is the steadier figure.

Usage::

    python benchmarks/bench_anonymize.py                     # 2000 files, 5 runs
    python benchmarks/bench_anonymize.py --files 200 --runs 1  # quick check
    python benchmarks/bench_anonymize.py --tools medconvert cp --runs 3
    python benchmarks/bench_anonymize.py --implicit            # the same files in implicit VR LE
    python benchmarks/bench_anonymize.py --real-archive        # the real-header archive (5,000+ files)

``--real-archive [N]`` runs on the archive of ``make_real_archive.py`` instead (at least N files,
default 5000: the real scanner headers of ``../shared/conformance`` replicated, explicit and
implicit VR, GE EPI, Siemens mosaics, enhanced multi-frame, CT; built and cached on first use).

The data set is generated once under ``benchmarks/data/`` (git-ignored) and reused. Results are
printed as a Markdown table and saved as JSON under ``benchmarks/results/`` (git-ignored).
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
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data"
RESULTS = HERE / "results"
TOOLS = ("medconvert", "dicognito", "deid", "cp")

DEID_SCRIPT = """
import sys
from deid.dicom import get_files, replace_identifiers
src, dst = sys.argv[1], sys.argv[2]
files = list(get_files(src))
replace_identifiers(dicom_files=files, save=True, output_folder=dst, overwrite=True)
"""


def dataset(n_files: int, size: int, implicit: bool = False) -> Path:
    """The cached input tree for ``n_files`` files of ``size`` x ``size`` (``implicit``: in implicit
    VR little endian, else explicit VR little endian); generated when missing."""
    root = DATA / f"anon_{n_files}x{size}{'_implicit' if implicit else ''}"
    done = root / ".complete"
    if done.is_file():
        return root / "src"
    if root.exists():
        shutil.rmtree(root)
    sys.path.insert(0, str(REPO))
    from fixtures.phi_corpus import make_benchmark_corpus

    t0 = time.perf_counter()
    print(f"generating {n_files} files of {size}x{size} under {root} ...", flush=True)
    make_benchmark_corpus(root / "src", n_files, size=size, implicit=implicit)
    done.write_text("ok\n")
    print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    return root / "src"


def command(tool: str, src: Path, dst: Path, key_file: Path, jobs: int | None) -> list[str]:
    """The command line that de-identifies (or copies) ``src`` into ``dst`` with ``tool``."""
    if tool == "medconvert":
        # this checkout's code (see _env), not whatever ``medconvert`` on PATH points at; its default run
        # writes the run report (report.json, report.html) into dst, as a user's does
        cmd = [sys.executable, "-m", "convert", "anonymize", str(src), str(dst), "--key", str(key_file)]
        if jobs:
            cmd += ["--jobs", str(jobs)]
        return cmd
    if tool == "dicognito":
        return [sys.executable, "-m", "dicognito", "--output-directory", str(dst), "--quiet", str(src)]
    if tool == "deid":
        return [sys.executable, "-c", DEID_SCRIPT, str(src), str(dst)]
    if tool == "cp":
        return ["cp", "-r", str(src), str(dst)]
    raise ValueError(tool)


def _env() -> dict[str, str]:
    """The environment for every tool: this checkout first on PYTHONPATH (and tools run in it), so
    ``python -m convert`` runs the code beside this script (the installed ``medconvert`` may point
    at another tree)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def run_once(tool: str, src: Path, scratch: Path, key_file: Path, jobs: int | None
             ) -> tuple[float, float, int, str]:
    """Run ``tool`` into a fresh folder; returns (wall seconds, CPU seconds (user + system, the tool's
    processes), files written, stderr tail)."""
    dst = scratch / f"{tool}_out"
    if dst.exists():
        shutil.rmtree(dst)
    if tool == "deid":
        dst.mkdir()
    cmd = command(tool, src, dst, key_file, jobs)
    t0 = time.perf_counter()
    before = os.times()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    n = count_files(dst)
    if proc.returncode not in (0,):
        tail = proc.stderr.strip().splitlines()[-3:]
        print(f"  warning: {tool} exited with {proc.returncode}: {' | '.join(tail)}", flush=True)
    shutil.rmtree(dst, ignore_errors=True)
    return wall, cpu, n, proc.stderr[-500:]


def check_medconvert_output(src: Path, scratch: Path, key_file: Path) -> None:
    """Before timing: de-identify a few files and make sure no planted PHI is left (never time a leak)."""
    sys.path.insert(0, str(REPO))
    import pydicom

    from fixtures.phi_corpus import PATIENTS, LeakScanner, element_texts, tokens_for

    sample = scratch / "sample_src"
    sample.mkdir()
    for i, path in enumerate(sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))[:3]):
        shutil.copy(path, sample / f"{i}.dcm")
    out = scratch / "sample_out"
    subprocess.run(command("medconvert", sample, out, key_file, None), check=True, capture_output=True, env=_env(),
                   cwd=REPO)
    tokens: set[str] = set()
    for pat in PATIENTS:
        tokens |= tokens_for(pat.name, "name") | tokens_for(pat.pid, "id") | tokens_for(pat.birth_date, "date")
    scanner = LeakScanner(tokens)
    for path in out.rglob("*.dcm"):
        hits = [h for _, t in element_texts(pydicom.dcmread(path)) for h in scanner.scan_text(t)]
        if hits:
            raise SystemExit(f"medconvert output {path} still holds planted PHI {hits[:5]}: not timing a leak")
    shutil.rmtree(sample)
    shutil.rmtree(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="number of 512x512 files (default 2000)")
    parser.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool (median reported; default 5)")
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--jobs", "--workers", dest="jobs", type=int, default=None,
                        help="medconvert --jobs (default: all cores; --workers: the old name)")
    parser.add_argument("--implicit", action="store_true",
                        help="the files in implicit VR little endian (default: explicit VR little endian)")
    parser.add_argument("--real-archive", type=int, nargs="?", const=5000, default=None, metavar="N",
                        help="run on the real-header archive of make_real_archive.py (at least N files, "
                             "default 5000) instead of the synthetic CT set")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run per tool")
    args = parser.parse_args(argv)

    if args.real_archive is not None:
        from make_real_archive import generate

        src = generate(args.real_archive, None, DATA)
        args.files = sum(1 for p in src.rglob("*") if p.is_file())
    else:
        src = dataset(args.files, args.size, args.implicit)
    size_mb = sum(p.stat().st_size for p in src.rglob("*") if p.is_file()) / 1e6
    scratch = Path(tempfile.mkdtemp(prefix="bench_anon_", dir=DATA))
    key_file = scratch / "key.bin"
    key_file.write_bytes(os.urandom(32))
    os.chmod(key_file, 0o600)
    try:
        if "medconvert" in args.tools:
            # .pyc files, as a wheel install writes them (PYTHONDONTWRITEBYTECODE may be set here)
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "convert")], check=False,
                           stdout=subprocess.DEVNULL)
            check_medconvert_output(src, scratch, key_file)
        times: dict[str, list[float]] = {t: [] for t in args.tools}
        cpus: dict[str, list[float]] = {t: [] for t in args.tools}
        written: dict[str, int] = {}
        load_start = os.getloadavg()
        if not args.no_warmup:
            for tool in args.tools:
                wall, cpu, n, _ = run_once(tool, src, scratch, key_file, args.jobs)
                written[tool] = n
                print(f"warm-up {tool:10s} {wall:8.2f} s  ({n} files written)", flush=True)
        for r in range(args.runs):
            for tool in args.tools:
                wall, cpu, n, _ = run_once(tool, src, scratch, key_file, args.jobs)
                written[tool] = n
                times[tool].append(wall)
                cpus[tool].append(cpu)
                print(f"run {r + 1}/{args.runs} {tool:10s} {wall:8.2f} s wall {cpu:8.2f} s CPU", flush=True)
        load_end = os.getloadavg()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    med = {t: statistics.median(v) for t, v in times.items()}
    med_cpu = {t: statistics.median(v) for t, v in cpus.items()}
    rate = {t: args.files / med[t] for t in med}
    print()
    encoding = "implicit" if args.implicit else "explicit"
    what = f"{args.files} files of {args.size}x{args.size} int16 ({size_mb:.0f} MB, {encoding} VR LE)"
    if args.real_archive is not None:
        encoding = "real-archive"
        what = f"{args.files} files of the real-header archive {src.name} ({size_mb:.0f} MB, explicit + implicit VR LE)"
    print(f"{what}, median of {args.runs} run(s), "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, load average "
          f"{load_start[0]:.2f} -> {load_end[0]:.2f}")
    print()
    print("| tool | median s | CPU s (user+sys) | files/s | files written | medconvert speed-up vs tool |")
    print("|---|---:|---:|---:|---:|---:|")
    for tool in args.tools:
        ratio = f"{rate['medconvert'] / rate[tool]:.2f}x" if "medconvert" in rate else "-"
        print(f"| {tool} | {med[tool]:.2f} | {med_cpu[tool]:.2f} | {rate[tool]:.1f} | {written.get(tool, 0)} | {ratio} |")
    print()
    verdicts = {}
    paired: dict[str, float] = {}
    for other in ("dicognito", "cp"):
        if "medconvert" in times and other in times:
            # same round, back to back: background load hits both alike
            paired[other] = statistics.median(m / o for m, o in zip(times["medconvert"], times[other]))
    if "medconvert" in rate and "dicognito" in rate:
        ok = rate["medconvert"] >= 3 * rate["dicognito"]
        verdicts["vs_dicognito"] = ok
        print(f"target >= 3x dicognito files/s: {rate['medconvert'] / rate['dicognito']:.2f}x -> {'PASS' if ok else 'FAIL'}"
              f" (median of paired rounds: {1 / paired['dicognito']:.2f}x)")
    if "medconvert" in med and "cp" in med:
        ok = med["medconvert"] <= 1.5 * med["cp"]
        verdicts["vs_cp"] = ok
        print(f"target within 1.5x of cp -r: {med['medconvert'] / med['cp']:.2f}x -> {'PASS' if ok else 'FAIL'}"
              f" (median of paired rounds: {paired['cp']:.2f}x)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"anonymize_{args.files}{'' if args.real_archive is not None else f'x{args.size}'}_{encoding}_{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"files": args.files, "size": args.size, "encoding": encoding, "runs": args.runs,
                               "times": times,
                               "median_s": med, "cpu_s": cpus, "median_cpu_s": med_cpu,
                               "paired_ratio_medconvert_over": paired, "load_average": [load_start, load_end],
                               "files_per_s": rate, "written": written, "verdicts": verdicts,
                               "cpu_count": os.cpu_count(), "python": platform.python_version()}, indent=1))
    print(f"\nsaved {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
