"""Hostile and broken inputs through the whole command line: no crash, no hang, no "unexpected".

Every input of the deterministic corpus (fixtures/fuzz_corpus.py: truncations, flipped
header bytes, huge/odd/undefined lengths, unknown VRs, absurd critical values, broken
NIfTI/NRRD/MINC/Analyze headers, corrupt gzip; from generated seeds and, when present,
real files of ../shared/conformance) goes through ``info``, ``info --json``, ``convert``
(file or folder) and ``anonymize``. Each run must end with exit 0 and a plausible output
or a one-line ConvertError message (exit 1; a folder run whose other series or files were written: 3); nothing may print "unexpected"/"could not
de-identify", ``info --json`` must be strict JSON, no input may change, and broken pixel
data must never be accepted silently (see :func:`fixtures.fuzz_corpus.judge`). The runs
are in-process (typer's CliRunner) under an address-space limit, so a header that makes
medconvert allocate more than a file could hold fails here; a few run as real processes
with a timeout, to prove that nothing hangs or aborts (a native decoder's abort kills
the process, which an in-process run cannot survive).

tools/fuzz_run.py runs the whole corpus (about 4,700 inputs, 18,000 runs); this suite
keeps a deterministic sample of every mutation family plus hypothesis-driven mutations.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.fuzz_corpus import (HEADER_VALUES, Case, Seed, cli_invoker, edit_element, make_seeds, mutations, pick,
                                  run_case, us16)
from tests.conftest import CONFORMANCE, REPO

#: Cases kept per mutation family (of each seed) in the in-process sample.
PER_FAMILY = 2
#: Extra address space the in-process runs may use (the corpus files are below 1 MB each).
MEMORY_HEADROOM = 2 << 30


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[Seed]:
    return make_seeds(tmp_path_factory.mktemp("seeds"), CONFORMANCE if CONFORMANCE.is_dir() else None)


@pytest.fixture(scope="module")
def invoke():
    return cli_invoker()


@contextlib.contextmanager
def bounded_memory(headroom: int = MEMORY_HEADROOM) -> Iterator[None]:
    """Limit this process's address space to what it uses now plus ``headroom`` (then restore it)."""
    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _run_all(cases: list[Case], tmp_path: Path, invoke) -> list[str]:
    problems = []
    with bounded_memory():
        for n, case in enumerate(cases):
            folder = tmp_path / f"c{n}"
            for run in run_case(case, folder, invoke):
                if run.problem:
                    problems.append(f"{run.case} [{run.command}]: {run.problem}")
                elif run.seconds > 30:  # a hang guard, not a benchmark
                    problems.append(f"{run.case} [{run.command}]: took {run.seconds:.0f} s")
            shutil.rmtree(folder, ignore_errors=True)
    return problems


def _sample(seeds: list[Seed], tmp_path: Path, names: set[str], per_family: int = PER_FAMILY,
            stride: int = 1) -> list[Case]:
    chosen = [s for s in seeds if s.name in names]
    return list(pick(corpus_of(chosen, tmp_path), per_family, stride))


def corpus_of(seeds: list[Seed], tmp_path: Path) -> Iterator[Case]:
    for seed in seeds:
        yield from mutations(seed, tmp_path / "scratch" / seed.name)


# --------------------------------------------------------------------------- the deterministic corpus
GENERATED_DICOM = {"dicom-ct", "dicom-ct-folder", "dicom-implicit", "dicom-rle", "dicom-rle-folder", "dicom-j2k",
                   "dicom-rgb", "dicom-palette", "dicom-cine"}
VOLUMES = {"nifti", "nifti-gz", "nifti-pair", "analyze", "nrrd", "nhdr", "nrrd-gzip", "minc"}


def test_generated_dicom_corpus(seeds, tmp_path, invoke):
    """DICOM seeds written by the fixtures: every mutation family, each command."""
    cases = _sample(seeds, tmp_path, GENERATED_DICOM)
    assert len(cases) > 300
    assert _run_all(cases, tmp_path, invoke) == []


def test_volume_format_corpus(seeds, tmp_path, invoke):
    """NIfTI, Analyze, NRRD and MINC2 seeds: header fields, truncation, corrupt gzip, HDF5 attributes."""
    cases = _sample(seeds, tmp_path, VOLUMES, per_family=3)
    assert len(cases) > 200
    assert _run_all(cases, tmp_path, invoke) == []


@pytest.mark.conformance
def test_conformance_corpus(seeds, tmp_path, invoke):
    """Real scanner files (every transfer syntax of dcm_qa_ts, enhanced, 12-bit), mutated."""
    real = {s.name for s in seeds if s.name.startswith("real-")}
    if not real:
        pytest.skip("real-data set not available (needs ../shared/conformance)")
    cases = _sample(seeds, tmp_path, real, per_family=1, stride=2)
    assert len(cases) > 100
    assert _run_all(cases, tmp_path, invoke) == []


def test_every_critical_value_of_one_slice(seeds, tmp_path, invoke):
    """Every absurd critical value (Rows/Columns 65535, PixelSpacing 0, unknown VR, unknown transfer
    syntax...) in one slice of a folder: the other slices still convert, nothing is unexpected."""
    seed = next(s for s in seeds if s.name == "dicom-ct-folder")
    cases = [c for c in corpus_of([seed], tmp_path)
             if not c.name.split("/")[1].startswith(("truncate", "flip", "word", "drop", "len-"))]
    assert len(cases) > 60
    assert _run_all(cases, tmp_path, invoke) == []


# --------------------------------------------------------------------------- real processes (no hang, no abort)
def _real_run(argv: list[str]) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "convert", *argv], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={**os.environ, "COLUMNS": "400"})  # as a user runs it
    return proc.returncode, proc.stdout, proc.stderr


SUBPROCESS_CASES = ("rows-cols-65535", "rows-65535", "frame-truncated", "fragment-beyond-file", "vr-XX-00080060",
                    "pixels-beyond-file", "ts-unknown")


def test_real_processes_neither_hang_nor_abort(seeds, tmp_path):
    """A few of the worst inputs as a user runs them (a fresh process each, 60 s timeout): a native
    decoder abort or a hang would show here; stderr holds only the CLI's own lines."""
    wanted = {"dicom-rle", "dicom-j2k", "real-ts-7", "real-ts-4"}
    cases = [c for c in corpus_of([s for s in seeds if s.name in wanted], tmp_path)
             if c.name.split("/")[1] in SUBPROCESS_CASES]
    assert len(cases) >= 8
    problems = []
    for n, case in enumerate(cases[::2][:8]):
        for run in run_case(case, tmp_path / f"p{n}", _real_run):
            if run.problem:
                problems.append(f"{run.case} [{run.command}]: {run.problem}")
    assert problems == []


def test_gdcm_present_changes_nothing(seeds, tmp_path):
    """With python-gdcm importable (dicom2nifti installs it), medconvert still decodes with pylibjpeg: a
    JPEG-LS file with Rows=65535 is refused with a message, the process is not aborted by GDCM."""
    import importlib.util

    if importlib.util.find_spec("gdcm") is None:  # not a dependency: only present beside dicom2nifti & co
        pytest.skip("python-gdcm is not installed (nothing for it to change)")
    seed = next((s for s in seeds if s.name == "real-ts-7"), None)
    if seed is None:
        pytest.skip("real-data set not available (needs ../shared/conformance)")
    data = edit_element(seed.files[seed.target], 0x00280010, value=us16(65535))
    path = tmp_path / "jpegls.dcm"
    path.write_bytes(data)
    code, out, err = _real_run(["info", str(path)])
    assert code == 1 and err.startswith("error:") and "65535" in err and "terminate" not in err


# --------------------------------------------------------------------------- hypothesis
def _seed(seeds: list[Seed], name: str) -> Seed:
    return next(s for s in seeds if s.name == name)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_edits_of_a_dicom_header(seeds, tmp_path_factory, invoke, data):
    """Random bytes written anywhere in the first kilobyte of a DICOM slice, optionally cut short."""
    seed = _seed(seeds, data.draw(st.sampled_from(["dicom-ct", "dicom-rle", "dicom-implicit"])))
    raw = bytearray(seed.files[seed.target])
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, min(1023, len(raw) - 1)))
        raw[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    case = Case("hypothesis/dicom", "dicom", {seed.target: bytes(raw)}, seed.target)
    folder = tmp_path_factory.mktemp("h")
    problems = [r.problem for r in run_case(case, folder, invoke) if r.problem]
    assert problems == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_nifti_and_analyze_header_values(seeds, tmp_path_factory, invoke, data):
    """Any value (finite or not) in any of the header fields NIfTI/Analyze readers rely on."""
    seed = _seed(seeds, data.draw(st.sampled_from(["nifti", "nifti-pair", "analyze"])))
    header = bytearray(seed.files[seed.target])
    fields = sorted({(f, i) for f, i, _ in HEADER_VALUES})
    for _ in range(data.draw(st.integers(1, 3))):
        field, index = data.draw(st.sampled_from(fields))
        offset, code = {"dim": (40, "h"), "datatype": (70, "h"), "bitpix": (72, "h"), "pixdim": (76, "f"),
                        "vox_offset": (108, "f"), "scl_slope": (112, "f"), "scl_inter": (116, "f"),
                        "xyzt_units": (123, "B"), "qform_code": (252, "h"), "sform_code": (254, "h"),
                        "quatern_b": (256, "f"), "qoffset_x": (268, "f"), "srow_x": (280, "f"),
                        "origin": (253, "h")}[field]
        size = struct.calcsize(code)
        if code == "f":
            value = data.draw(st.floats(width=32, allow_nan=True, allow_infinity=True))
            struct.pack_into("<f", header, offset + index * size, value)
        elif code == "h":
            struct.pack_into("<h", header, offset + index * size, data.draw(st.integers(-32768, 32767)))
        else:
            struct.pack_into("<B", header, offset + index * size, data.draw(st.integers(0, 255)))
    files = dict(seed.files)
    files[seed.target] = bytes(header)
    case = Case("hypothesis/header", seed.kind, files, seed.target)
    folder = tmp_path_factory.mktemp("h")
    problems = [r.problem for r in run_case(case, folder, invoke) if r.problem]
    assert problems == []


def test_docs_example_runs(tmp_path, monkeypatch, capsys):
    """docs/errors.md: the Python example runs as written and prints the one-line error."""
    import re

    block = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "errors.md").read_text(), flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/errors.md", "exec"), {})
    assert capsys.readouterr().out.strip() == ("broken.nii: the header's dim[0] (number of dimensions) is 9; it must "
                                               "be 1 to 7: the header is corrupt")
