"""`medconvert convert --anonymize` on a whole PHI-laden archive: nothing identifying reaches any output.

The corpus (fixtures/phi_corpus.py) plants PHI in headers, private tags, sequences,
file and folder names. Every file written, its name, its bytes, its JSON sidecar
and everything the command prints is scanned for every planted value.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fixtures.phi_corpus import LeakScanner, make_corpus

KEY = b"test-key-for-convert-anonymize"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus") / "PACS_export")


@pytest.fixture(scope="module")
def scanner(corpus):
    return LeakScanner(corpus.tokens())


def _run(*args: str, key_file: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400"}
    env.pop("MEDCONVERT_KEY", None)
    cmd = [sys.executable, "-m", "convert", "convert", *args]
    if key_file is not None:
        cmd += ["--key", str(key_file)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def converted(corpus, tmp_path_factory):
    base = tmp_path_factory.mktemp("conv")
    key_file = base / "key.txt"
    key_file.write_bytes(KEY)
    out = base / "out"
    proc = _run(str(corpus.root), str(out), "--anonymize", key_file=key_file)
    return proc, out, key_file


def test_every_output_clean(converted, scanner):
    proc, out, _ = converted
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".nii.gz") for p in files) and any(p.suffix == ".json" for p in files)
    leaks = []
    for p in files:
        leaks += [f"name {p.name}: {h}" for h in scanner.scan_path(p.relative_to(out))]
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        leaks += [f"{p.name}: {h}" for h in scanner.scan_bytes(raw)]
        if p.suffix == ".json":
            leaks += [f"{p.name} json: {h}" for h in scanner.scan_text(p.read_text(encoding="utf-8"))]
    assert not leaks, "\n".join(leaks[:40])


def test_console_output_clean(converted, scanner):
    proc, _, _ = converted
    # Error and warning lines name series by number and shape, and input files only as "<input file>".
    hits = scanner.scan_text(proc.stdout + proc.stderr)
    assert not hits, hits


def test_burned_in_series_refused_others_written(converted):
    proc, out, _ = converted
    assert proc.returncode == 1  # something was refused...
    assert "BurnedInAnnotation" in proc.stderr or "burned-in" in proc.stderr
    assert len(list(out.glob("*.nii.gz"))) >= 10  # ...and everything else still converted


def test_names_are_pseudonyms_and_deterministic(converted, corpus, tmp_path):
    _, out, key_file = converted
    names = sorted(p.name for p in out.glob("*.nii.gz"))
    assert all(n.startswith("ANON") for n in names)
    again = tmp_path / "again"
    _run(str(corpus.root), str(again), "--anonymize", key_file=key_file)
    assert sorted(p.name for p in again.glob("*.nii.gz")) == names


def test_sidecar_has_deidentification_flags_not_identity(converted):
    _, out, _ = converted
    sidecar = json.loads(next(out.glob("*.json")).read_text())
    for forbidden in ("PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "AcquisitionDateTime",
                      "InstitutionName", "PatientBirthDate"):
        assert forbidden not in sidecar


def test_voxels_and_geometry_unchanged_by_deidentification(corpus, tmp_path, converted):
    # The same archive converted without --anonymize gives the same voxels and affines.
    plain = tmp_path / "plain"
    _run(str(corpus.root), str(plain), "--name", "{SeriesNumber}_{Modality}_{Index}")
    _, anon, _ = converted
    plain_set = sorted((nib.load(p).shape, np.asarray(nib.load(p).dataobj).tobytes(), nib.load(p).affine.round(4).tobytes())
                       for p in plain.glob("*.nii.gz"))
    anon_set = sorted((nib.load(p).shape, np.asarray(nib.load(p).dataobj).tobytes(), nib.load(p).affine.round(4).tobytes())
                      for p in anon.glob("*.nii.gz"))
    assert anon_set and set(anon_set) <= set(plain_set)


def test_sidecar_phi_cannot_be_combined(corpus, tmp_path):
    proc = _run(str(corpus.root), str(tmp_path / "x"), "--anonymize", "--sidecar-phi")
    assert proc.returncode == 2 and "--sidecar-phi" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_pseudonym_field_needs_anonymize(corpus, tmp_path):
    proc = _run(str(corpus.root), str(tmp_path / "x"), "--name", "{Pseudonym}")
    assert proc.returncode == 1 and "--anonymize" in proc.stderr and "Traceback" not in proc.stderr


def test_key_without_anonymize_is_usage_error(corpus, tmp_path):
    key = tmp_path / "k"
    key.write_bytes(KEY)
    proc = _run(str(corpus.root), str(tmp_path / "x"), key_file=key)
    assert proc.returncode == 2


def test_positive_control_plain_conversion_does_carry_descriptions(corpus, scanner, tmp_path):
    # Without --anonymize, default names and sidecars carry SeriesDescription (as dcm2niix does):
    # the scanner must see that, or the clean results above would prove nothing.
    plain = tmp_path / "plain"
    _run(str(corpus.root), str(plain))
    found = [h for p in plain.rglob("*") if p.is_file() for h in scanner.scan_path(p.relative_to(plain))]
    found += [h for p in plain.glob("*.json") for h in scanner.scan_text(p.read_text(encoding="utf-8"))]
    assert found
