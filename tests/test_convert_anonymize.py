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
    assert proc.returncode == 3  # something was refused (completed with failures)...
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
    sidecar = json.loads(next(p for p in out.glob("*.json") if p.name != "report.json").read_text())
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


# --------------------------------------------------------------------------- acquisition timing survives
def _sidecars_by_series(out: Path) -> dict[tuple[str, int], dict]:
    found = {}
    sidecars = sorted(p for p in out.glob("*.json") if p.name != "report.json")  # report.json: the run's
    for path in sidecars:
        data = json.loads(path.read_text())
        found[(data["Manufacturer"], data["SeriesNumber"])] = data
    assert len(found) == len(sidecars)
    return found


@pytest.mark.conformance
def test_anonymized_sidecar_keeps_slice_timing_and_phase_encoding(tmp_path):
    """Siemens (CSA) and GE (raw header, protocol block) timing/encoding come from private data that
    de-identification removes; the numbers themselves identify no one and must survive --anonymize."""
    from convert.anonymize import Scrubber
    from convert.batch import convert_dicom_tree
    from tests.conftest import conformance_dir

    src = conformance_dir("dcm_qa_nih") / "In"
    scrubber = Scrubber(KEY)
    plain = convert_dicom_tree(src, tmp_path / "plain", to="nifti-gz")
    anon = convert_dicom_tree(src, tmp_path / "anon", to="nifti-gz",
                              name="{Pseudonym}_{SeriesNumber}", deidentify=lambda ds: scrubber.scrub(ds).dataset)
    assert all(o.ok for o in plain.outcomes) and all(o.ok for o in anon.outcomes)
    plain_sc, anon_sc = _sidecars_by_series(tmp_path / "plain"), _sidecars_by_series(tmp_path / "anon")
    assert plain_sc.keys() == anon_sc.keys() and len(plain_sc) >= 8
    with_timing = 0
    for number, ours in anon_sc.items():
        ref = plain_sc[number]
        for key in ("SliceTiming", "PhaseEncodingDirection", "PhaseEncodingAxis", "EffectiveEchoSpacing",
                    "TotalReadoutTime", "ReconMatrixPE", "BandwidthPerPixelPhaseEncode"):
            assert ours.get(key) == ref.get(key), (number, key)
        with_timing += "SliceTiming" in ours and "PhaseEncodingDirection" in ours
    assert with_timing >= 8  # 4 Siemens mosaic + 4 GE EPI series carry both


def test_anonymized_sidecar_takes_no_text_from_original_headers(corpus, tmp_path):
    """Only numbers/axis codes cross from the original headers: a derived key holding text is dropped."""
    import pydicom

    from convert.anonymize import Scrubber
    from convert.dicom import sidecar as sc

    files = sorted(p for p in corpus.root.rglob("*") if p.is_file())
    headers = []
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if "ImagePositionPatient" in ds:
            headers.append(ds)
    assert headers
    scrubber = Scrubber(KEY)
    clean = [scrubber.scrub(ds).dataset for ds in headers[:1]]
    real_build = sc.build_sidecar

    def poisoned(datasets, volume=None, **kw):
        data = real_build(datasets, volume, **kw)
        if datasets is not clean:  # the original headers: make every derived key carry text
            data.update({"SliceTiming": [0.0, "DOE^JOHN"], "PhaseEncodingDirection": "j DOE",
                         "EffectiveEchoSpacing": "DOE", "TotalReadoutTime": float("nan")})
        return data

    try:
        sc.build_sidecar = poisoned
        result = sc.deidentified_sidecar(headers[:1], clean)
    finally:
        sc.build_sidecar = real_build
    for key in ("SliceTiming", "PhaseEncodingDirection", "EffectiveEchoSpacing", "TotalReadoutTime"):
        assert key not in result
    scanner = LeakScanner(corpus.tokens())
    assert not scanner.scan_text(json.dumps(result))
