"""The streaming DICOM -> NIfTI path (convert/dicom/fastpath.py, convert/_fastcli.py).

Differential: for every series the fast path handles, its NIfTI (header and
voxels; decompressed for .nii.gz), its JSON sidecar and its messages must equal
what the full path (the typer CLI: pydicom, nibabel) writes; otherwise it must
have declined without leaving anything behind.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from conftest import CONFORMANCE  # noqa: E402
from fixtures.dicom_series import (  # noqa: E402
    make_12bit_garbage,
    make_monochrome1,
    make_non_dicom_files,
    make_series,
    make_short_pixel_data,
    write_series,
)

from convert._fastcli import parse_convert_args, try_fast  # noqa: E402
from convert.cli import app  # noqa: E402
from convert.dicom import fastpath  # noqa: E402
from convert.dicom.fastpath import KEYWORDS, Declined, HeaderMap, convert_single_fast, convert_value  # noqa: E402
from convert.sample import oblique_cosines  # noqa: E402

runner = CliRunner()


def _raw_outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def _nifti_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: _nifti_bytes(p) for p in sorted(folder.iterdir())}


def _full(src: Path, dst: Path, *extra: str) -> tuple[int, str]:
    """The full path: the typer CLI (its ``convert`` command never takes the shortcut)."""
    result = runner.invoke(app, ["convert", str(src), str(dst), *extra])
    return result.exit_code, result.output


def assert_same_as_full(src: Path, tmp: Path, name: str = "out.nii", **options: object) -> bool:
    """Run both paths into separate folders; True when the fast path handled it (outputs then equal)."""
    fast_dir, full_dir = tmp / "fast", tmp / "full"
    for folder in (fast_dir, full_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    seen: list[str] = []
    written = convert_single_fast(src, fast_dir / name, on_warning=seen.append, **options)  # type: ignore[arg-type]
    extra = ["--no-sidecar"] if options.get("sidecar") is False else []
    code, output = _full(src, full_dir / name, *extra)
    if written is None:
        assert not any(fast_dir.iterdir()), "a declined fast path left files behind"
        return False
    assert code == 0, output
    assert written[0] == fast_dir / name and {p.name for p in written} == {p.name for p in full_dir.iterdir()}
    assert _outputs(fast_dir) == _outputs(full_dir)
    assert _raw_outputs(fast_dir) == _raw_outputs(full_dir)  # the .nii.gz streams too, byte for byte
    flat = "".join(output.split())  # the full CLI wraps (and folds) long lines
    assert flat.count("warning:") == len(seen)  # the same warnings (and no pydicom value warning)
    for warning in seen:
        assert "".join(warning.split()) in flat
    return True


# --------------------------------------------------------------------------- generated series
GENERATED = {
    "axial": dict(),
    "sagittal": dict(orientation="sagittal"),
    "coronal": dict(orientation="coronal"),
    "oblique": dict(row_cosine=oblique_cosines()[0], column_cosine=oblique_cosines()[1]),
    "descending": dict(descending=True),
    "shuffled names": dict(shuffle_names=True),
    "per-slice rescale (integer)": dict(rescale_slope=[1.0] * 5 + [2.0] * 5, rescale_intercept=-1024.0),
    "per-slice rescale (float)": dict(rescale_slope=[0.5 + 0.1 * k for k in range(10)], rescale_intercept=3.25),
    "scaled": dict(rescale_slope=2.5, rescale_intercept=-7.0),
    "unscaled": dict(rescale_slope=1.0, rescale_intercept=0.0),
    "4D": dict(times=3, modality="MR"),
    "MR": dict(modality="MR"),
    "uneven spacing": dict(slice_offsets=[0, 2.5, 5, 7.5, 10.4, 12.9, 15.4, 17.9, 20.4, 22.9]),
    "tilt": dict(tilt_deg=12.0),
    "gap": dict(skip=[4]),
    "12-bit unsigned": dict(bits_stored=12, signed=False),
    "one slice": dict(slices=1),
}


@pytest.mark.parametrize("case", sorted(GENERATED))
@pytest.mark.parametrize("name", ["out.nii", "out.nii.gz"])
def test_generated_series_equal_the_full_path_or_decline(tmp_path: Path, case: str, name: str) -> None:
    changes = dict(GENERATED[case])
    orientation = str(changes.pop("orientation", "axial"))
    make_series(tmp_path / "in", orientation, **changes)
    handled = assert_same_as_full(tmp_path / "in", tmp_path, name)
    # a gap is an error the full path words; uneven spacing is resampled (or stacked with a note) by the
    # full path only; everything else streams
    assert handled == (case not in ("gap", "uneven spacing"))


def test_duplicates_warn_exactly_like_the_full_path(tmp_path: Path) -> None:
    import pydicom

    paths, _ = make_series(tmp_path / "in")
    ds = pydicom.dcmread(paths[3])
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"  # same position and time, another instance: a warning
    ds.save_as(tmp_path / "in" / "copy_of_slice.dcm")
    assert assert_same_as_full(tmp_path / "in", tmp_path)


def test_same_instance_twice_is_declined(tmp_path: Path) -> None:
    """Byte-identical copies are counted in a summary line the full path prints: not mirrored here."""
    paths, _ = make_series(tmp_path / "in")
    shutil.copy(paths[3], tmp_path / "in" / "copy_of_slice.dcm")
    assert not assert_same_as_full(tmp_path / "in", tmp_path)


def test_non_dicom_files_are_skipped_as_the_scan_skips_them(tmp_path: Path) -> None:
    make_series(tmp_path / "in")
    make_non_dicom_files(tmp_path / "in")
    assert assert_same_as_full(tmp_path / "in", tmp_path)


def test_12bit_garbage_is_masked_like_the_full_path(tmp_path: Path) -> None:
    for signed in (False, True):
        make_12bit_garbage(tmp_path / f"in{signed}", signed)
        assert assert_same_as_full(tmp_path / f"in{signed}", tmp_path / f"o{signed}")


def test_no_sidecar_and_to_option(tmp_path: Path) -> None:
    make_series(tmp_path / "in")
    assert assert_same_as_full(tmp_path / "in", tmp_path, sidecar=False)
    assert not (tmp_path / "fast" / "out.json").exists()
    out = tmp_path / "to" / "image.bin"
    out.parent.mkdir()
    assert convert_single_fast(tmp_path / "in", out, to="nifti") == [out, out.with_name("image.json")]
    assert out.read_bytes() == (tmp_path / "fast" / "out.nii").read_bytes()


@pytest.mark.parametrize("make", ["monochrome1", "short pixel data", "several series", "implicit VR", "phi",
                                  "dicomdir", "philips scaling"])
def test_unsupported_inputs_decline_and_leave_nothing(tmp_path: Path, make: str) -> None:
    src = tmp_path / "in"
    options: dict[str, object] = {}
    if make == "monochrome1":
        make_monochrome1(src)
    elif make == "short pixel data":
        make_short_pixel_data(src)
    elif make == "several series":
        make_series(src / "a", series_number=1)
        make_series(src / "b", series_number=2)
    elif make == "implicit VR":
        paths, _ = make_series(src)
        import pydicom

        ds = pydicom.dcmread(paths[0])
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        ds.save_as(paths[0], enforce_file_format=True)
    elif make == "dicomdir":  # the scan follows a DICOMDIR's references: left to the full path
        from fixtures.dicomdir_media import make_media

        make_media(src, series=1)
    elif make == "philips scaling":  # precise values and the sidecar's Philips fields: the full path only
        from fixtures.dicom_series import make_philips_series

        make_philips_series(src)
    else:
        make_series(src)
        options["sidecar_phi"] = True
    out = tmp_path / "out"
    out.mkdir()
    assert convert_single_fast(src, out / "x.nii", **options) is None  # type: ignore[arg-type]
    assert list(out.iterdir()) == []


def test_existing_output_declines_so_the_full_path_words_the_error(tmp_path: Path) -> None:
    make_series(tmp_path / "in")
    (tmp_path / "out.nii").write_bytes(b"keep me")
    assert convert_single_fast(tmp_path / "in", tmp_path / "out.nii") is None
    assert (tmp_path / "out.nii").read_bytes() == b"keep me"
    assert convert_single_fast(tmp_path / "in", tmp_path / "out.nii", overwrite=True) is not None
    assert (tmp_path / "out.nii").read_bytes()[344:347] == b"n+1"


def test_unusual_header_values_decline(tmp_path: Path) -> None:
    """A value pydicom would warn about (lower-case CS) must go to the full path, which prints that warning."""
    spec_paths, _ = make_series(tmp_path / "in", extra={"BodyPartExamined": "head"})
    assert convert_single_fast(tmp_path / "in", tmp_path / "o.nii") is None
    del spec_paths


# --------------------------------------------------------------------------- real scanner data
def _conformance_series() -> list[Path]:
    if not CONFORMANCE.is_dir():
        return []
    return sorted({p.parent for p in CONFORMANCE.glob("*/In/**/*") if p.is_file()})


@pytest.mark.conformance
def test_every_conformance_folder_equals_the_full_path_or_declines(tmp_path: Path) -> None:
    folders = _conformance_series()
    if not folders:
        pytest.skip("real-data sets not available (needs ../shared/conformance)")
    handled = []
    for n, folder in enumerate(folders):
        for name in ("out.nii", "out.nii.gz"):
            if assert_same_as_full(folder, tmp_path / str(n), name):
                handled.append(folder)
    assert handled, "the fast path handled no real series at all"


# --------------------------------------------------------------------------- value conversion
def _pydicom_value(vr: str, raw: bytes) -> tuple[object, list[str]]:
    from pydicom.dataelem import RawDataElement, convert_raw_data_element

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        elem = convert_raw_data_element(RawDataElement(0x00180050 if vr == "DS" else 0x00080060, vr, len(raw), raw,
                                                       0, False, True))
        value = elem.value
    return value, [str(w.message) for w in caught]


_TEXTS = st.one_of(
    st.text(alphabet=" 0123456789.+-eEABCxyz_\\\x00/", max_size=24),  # mostly odd values
    st.lists(st.from_regex(r"[+-]?[0-9]{1,6}(\.[0-9]{0,6})?([eE][+-]?[0-9])?", fullmatch=True), min_size=1,
             max_size=3).map("\\".join),  # plain numbers
    st.lists(st.from_regex(r"[A-Z0-9_]{1,8}( [A-Z0-9_]{1,6})?", fullmatch=True), min_size=1, max_size=3)
    .map("\\".join),  # plain codes
)


@settings(max_examples=400, deadline=None)
@given(vr=st.sampled_from(["DS", "IS", "CS", "LO", "SH", "TM"]), text=_TEXTS)
def test_converted_values_are_pydicoms_or_declined(vr: str, text: str) -> None:
    raw = text.encode("ascii")
    if len(raw) % 2:
        raw += b" "
    try:
        mine = convert_value(vr, raw)
    except Declined:
        return
    theirs, warned = _pydicom_value(vr, raw)
    assert not warned, (vr, raw, warned)
    if isinstance(mine, list):
        assert [str(v) for v in mine] == [str(v) for v in theirs]  # type: ignore[union-attr]
        assert mine == list(theirs)  # type: ignore[arg-type]
    else:
        assert mine == theirs or (mine in ("", None) and theirs in ("", None))
        assert str(mine) == str(theirs) or mine in ("", None)


def test_plain_values_are_accepted() -> None:
    assert convert_value("DS", b"0.7\\0.70 ") == [0.7, 0.7] and str(convert_value("DS", b"0.70")) == "0.70"
    assert convert_value("IS", b"0012") == 12 and str(convert_value("IS", b"0012")) == "0012"
    assert convert_value("CS", b"ORIGINAL\\PRIMARY\\AXIAL ") == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert convert_value("FD", np.array([2.5], "<f8").tobytes()) == 2.5
    with pytest.raises(Declined):
        convert_value("PN", b"Doe^John")


def test_keyword_table_matches_pydicom_and_covers_the_sidecar() -> None:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    from convert.dicom.sidecar import SIDECAR_FIELDS

    for keyword, (tag, vr) in KEYWORDS.items():
        assert tag_for_keyword(keyword) == tag and dictionary_VR(tag) == vr, keyword
    used = {kw for _, keywords, _ in SIDECAR_FIELDS for kw in keywords}
    assert used <= set(KEYWORDS)


def test_header_map_refuses_what_it_does_not_mirror(tmp_path: Path) -> None:
    paths, _ = make_series(tmp_path / "in")
    from convert.dicom.scan import _fast_index

    inst = _fast_index(paths[0])
    assert inst is not None and inst.pixel_offset
    header = fastpath.parse_header(paths[0], inst.pixel_offset)
    assert isinstance(header, HeaderMap)
    assert header.get("Modality") == "CT" and header["SliceThickness"].value == 2.5
    assert "ImageOrientationPatient" in header and (0x0029, 0x1010) not in header
    for bad in (lambda: header.get("PatientName"), lambda: header[(0x0010, 0x0010)], lambda: list(header),
                lambda: header.file_meta, lambda: header.private_block(0x0029, "X", create=True)):
        with pytest.raises(Declined):
            bad()
    with pytest.raises(KeyError):
        header.private_block(0x0029, "SIEMENS CSA HEADER")


def test_private_blocks_read_like_pydicom(tmp_path: Path) -> None:
    """GE-style private fields (the sidecar's readout timing reads them through ``private_block``)."""
    import pydicom

    def add_private(ds, k, t):  # type: ignore[no-untyped-def]
        block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
        block.add_new(0x2C, "SS", 560)
        block.add_new(0x83, "DS", ["1", "2.5"])

    paths = write_series(tmp_path / "in", small_spec_mr(), mutate=add_private)
    from convert.dicom.scan import _fast_index

    inst = _fast_index(paths[0])
    assert inst is not None and inst.pixel_offset
    mine = fastpath.parse_header(paths[0], inst.pixel_offset).private_block(0x0043, "GEMS_PARM_01")
    theirs = pydicom.dcmread(paths[0], stop_before_pixels=True).private_block(0x0043, "GEMS_PARM_01")
    assert mine[0x2C].value == theirs[0x2C].value == 560
    assert mine[0x83].value == list(theirs[0x83].value) == [1.0, 2.5]
    with pytest.raises(KeyError):
        mine[0x10]


def small_spec_mr():  # type: ignore[no-untyped-def]
    from fixtures.dicom_series import small_spec

    return small_spec(modality="MR", slices=4)


# --------------------------------------------------------------------------- the CLI shortcut
def test_command_line_forms_the_shortcut_accepts() -> None:
    assert parse_convert_args(["convert", "a", "b.nii"]) == {"to": None, "name": None, "overwrite": False,
                                                             "sidecar": True, "src": "a", "dst": "b.nii"}
    assert parse_convert_args(["convert", "a", "b", "--name", "{SeriesNumber}"])["name"] == "{SeriesNumber}"  # type: ignore[index]
    assert parse_convert_args(["convert", "a", "b", "--name={Modality} x"])["name"] == "{Modality} x"  # type: ignore[index]
    assert parse_convert_args(["convert", "a", "b", "--to=nii", "--overwrite", "--no-sidecar"])["to"] == "nii"  # type: ignore[index]
    for other in (["info", "a"], ["convert", "a", "b", "--anonymize"], ["convert", "a"], ["convert", "a", "b", "-h"],
                  ["convert", "a", "b", "--to"], ["convert", "--", "a", "b"], ["convert", "a", "b", "--name"]):
        assert parse_convert_args(other) is None


def _run(*args: str, module: bool = True) -> subprocess.CompletedProcess:
    code = "import sys; from convert.cli import app; sys.argv[0] = 'medconvert'; app()"
    argv = [sys.executable, "-m", "convert", *args] if module else [sys.executable, "-c", code, *args]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(REPO)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


@pytest.mark.parametrize("case", ["plain", "uneven"])
def test_cli_messages_and_files_equal_the_full_cli(tmp_path: Path, case: str) -> None:
    changes = {"uneven": dict(slice_offsets=[0, 2.5, 5, 7.5, 10.4, 12.9, 15.4, 17.9, 20.4, 22.9])}.get(case, {})
    make_series(tmp_path / "in", **changes)  # type: ignore[arg-type]
    out = tmp_path / "o"
    results = []
    for module in (True, False):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        proc = _run("convert", str(tmp_path / "in"), str(out / "x.nii.gz"), module=module)
        results.append((proc.returncode, proc.stdout, proc.stderr, _outputs(out)))
    assert results[0] == results[1]
    assert results[0][0] == 0 and "wrote" in results[0][1]
    assert ("warning: uneven slice spacing" in results[0][2]) == (case == "uneven")


def test_plain_ct_conversion_imports_no_pydicom_nibabel_sitk_typer(tmp_path: Path) -> None:
    """The speed of the shortcut is its imports: keep them out (a regression here costs ~0.5 s per run)."""
    import tempfile

    make_series(tmp_path / "in")
    out = Path(tempfile.mkdtemp(prefix="mc"))  # a short path: "wrote ..." fits one line, so rich is not needed
    code = ("import sys; from convert._fastcli import try_fast; "
            f"rc = try_fast(['convert', {str(tmp_path / 'in')!r}, {str(out / 'x.nii')!r}]); "
            "heavy = sorted(m for m in ('pydicom', 'nibabel', 'SimpleITK', 'typer', 'pydantic', 'h5py', 'scipy', "
            "'rich', 'nrrd') if m in sys.modules); print(rc, heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    try:
        assert proc.stdout.strip().splitlines()[-1] == "0 []", proc.stdout + proc.stderr
        assert json.loads((out / "x.json").read_text())["Modality"] == "CT"
    finally:
        shutil.rmtree(out)


def test_declined_command_runs_the_full_cli(tmp_path: Path) -> None:
    make_series(tmp_path / "in", skip=[4])
    assert try_fast(["convert", str(tmp_path / "in"), str(tmp_path / "x.nii")]) is None
    proc = _run("convert", str(tmp_path / "in"), str(tmp_path / "x.nii"))
    assert proc.returncode == 1 and "missing slices" in proc.stderr and not (tmp_path / "x.nii").exists()


def test_write_series_fixture_still_pydicom(tmp_path: Path) -> None:
    """Guard: the generated inputs above are real Part 10 files the fast index accepts."""
    paths = write_series(tmp_path / "in")
    from convert.dicom.scan import _fast_index

    assert all(_fast_index(p) is not None for p in paths[:3])


@settings(max_examples=25, deadline=None)
@given(angles=st.tuples(*[st.floats(-3.1, 3.1, allow_nan=False)] * 3), slices=st.integers(1, 6),
       times=st.integers(1, 2), descending=st.booleans(), shuffle=st.booleans(), signed=st.booleans(),
       bits=st.sampled_from([12, 16]), slopes=st.sampled_from(["same", "int", "float"]),
       spacing=st.floats(0.3, 5.0).map(lambda v: round(v, 3)),  # longer DS values make pydicom warn: declined
       name=st.sampled_from(["out.nii", "out.nii.gz"]))
def test_random_series_equal_the_full_path(tmp_path_factory: pytest.TempPathFactory, angles: tuple[float, ...],
                                           slices: int, times: int, descending: bool, shuffle: bool, signed: bool,
                                           bits: int, slopes: str, spacing: float, name: str) -> None:
    from fixtures.dicom_series import small_spec

    tmp = tmp_path_factory.mktemp("random")
    row, col = oblique_cosines(*angles)
    slope: object = {"same": 1.5, "int": [1.0 + (k % 2) for k in range(slices)],
                     "float": [0.25 * (k + 1) for k in range(slices)]}[slopes]
    spec = small_spec(row_cosine=row, column_cosine=col, slices=slices, times=times, descending=descending,
                      shuffle_names=shuffle, signed=signed, bits_stored=bits, rescale_slope=slope,
                      slice_spacing=spacing, modality="MR" if times > 1 else "CT")
    write_series(tmp / "in", spec)
    assert assert_same_as_full(tmp / "in", tmp, name)


# --------------------------------------------------------------------------- folder output (every series)

def assert_tree_same_as_full(src: Path, tmp: Path, *extra: str, existing: dict[str, bytes] | None = None,
                             messages: bool = True) -> bool:
    """``convert SRC OUT_DIR *extra`` on both paths; True when the fast path handled it.

    Files (raw bytes, .nii.gz included) always equal the full CLI's. With
    ``messages`` the command runs as a subprocess on both entry points and exit
    code, stdout and stderr must be equal too. ``existing`` pre-populates both
    output folders.
    """
    from convert.dicom.fastpath import convert_tree_fast

    dirs = {k: tmp / k for k in ("fast", "full", "call")}  # same-length names: messages compare after a replace
    for folder in dirs.values():
        shutil.rmtree(folder, ignore_errors=True)
        if existing is not None:
            folder.mkdir(parents=True)
            for file_name, data in existing.items():
                (folder / file_name).write_bytes(data)
    options = parse_convert_args(["convert", str(src), str(dirs["call"]), *extra])
    assert options is not None
    result = convert_tree_fast(src, dirs["call"], to=str(options["to"] or "nifti-gz"), name=options["name"],  # type: ignore[arg-type]
                               overwrite=bool(options["overwrite"]), sidecar=bool(options["sidecar"]))
    if messages:
        fast = _run("convert", str(src), str(dirs["fast"]), *extra)
        full = _run("convert", str(src), str(dirs["full"]), *extra, module=False)
        assert (fast.returncode, fast.stdout.replace("/fast/", "/full/"), fast.stderr.replace("/fast/", "/full/")) \
            == (full.returncode, full.stdout, full.stderr)
        assert _raw_outputs(dirs["fast"]) == _raw_outputs(dirs["full"])
    else:
        code, output = _full(src, dirs["full"], *extra)
        assert code in (0, 1), output
    if result is None:
        assert _raw_outputs(dirs["call"]) == (existing or {}), "a declined fast path left files behind"
        return False
    assert _raw_outputs(dirs["call"]) == _raw_outputs(dirs["full"])
    names = [p.name for o in result.outcomes for p in o.written]
    assert len(set(names)) == len(names) and set(names) <= set(_raw_outputs(dirs["full"]))
    assert set(_raw_outputs(dirs["full"])) - set(names) <= set(existing or {})
    return True


def _multi_series(src: Path, **changes: dict[str, object]) -> None:
    """Three distinct series (CT, 4D MR, per-slice rescaled CT) with a few non-DICOM files mixed in."""
    specs: dict[str, dict[str, object]] = {
        "ct": dict(series_number=3, description="Head CT", seed=11),
        "mr": dict(series_number=7, description="fMRI run", modality="MR", times=3, seed=12),
        "rescaled": dict(series_number=12, description="Bone (sharp)", seed=13,
                         rescale_slope=[1.0] * 5 + [2.0] * 5, rescale_intercept=-1024.0),
    }
    for folder, spec in specs.items():
        spec.update(changes.get(folder, {}))
        make_series(src / folder, **spec)  # type: ignore[arg-type]
    make_non_dicom_files(src)


@pytest.mark.parametrize("extra", [(), ("--to", "nii"), ("--to=nifti", "--no-sidecar"),
                                   ("--name", "{Modality}-{SeriesNumber}/{SeriesDescription} (x*y?)"),
                                   ("--name", "{ProtocolName}{BodyPartExamined}"),
                                   ("--name", "s{SeriesNumber}_{Split}{EchoNumber}{ImageType}{Index}")])
def test_folder_output_equals_the_full_path(tmp_path: Path, extra: tuple[str, ...]) -> None:
    _multi_series(tmp_path / "in")
    assert assert_tree_same_as_full(tmp_path / "in", tmp_path, *extra)


def test_gzip_stream_cut_like_the_full_path_when_slabs_exceed_a_block(tmp_path: Path) -> None:
    """Slabs longer than the compressor's 1 MiB block (written around the buffer) and shorter ones (buffered)."""
    make_series(tmp_path / "in" / "big", rows=256, columns=320, slices=14, seed=31, series_number=1)
    make_series(tmp_path / "in" / "big4d", rows=256, columns=256, slices=9, times=2, modality="MR", seed=32,
                series_number=2)
    make_series(tmp_path / "in" / "small", seed=33, series_number=3)
    assert assert_tree_same_as_full(tmp_path / "in", tmp_path, "--to", "nifti-gz")
    for case in ("big", "big4d"):
        assert assert_same_as_full(tmp_path / "in" / case, tmp_path / case, "x.nii.gz")


def test_folder_output_name_collisions_get_the_same_suffixes(tmp_path: Path) -> None:
    for n in range(3):
        make_series(tmp_path / "in" / str(n), series_number=5, description="Same", seed=20 + n)
    assert assert_tree_same_as_full(tmp_path / "in", tmp_path)
    assert sorted(_raw_outputs(tmp_path / "full")) == sorted(
        f"5_Same{s}.{e}" for s in ("", "_2", "_3") for e in ("json", "nii.gz"))
    assert assert_tree_same_as_full(tmp_path / "in", tmp_path, "--name", "constant")


def test_folder_output_warnings_in_the_same_order(tmp_path: Path) -> None:
    _multi_series(tmp_path / "in", ct=dict(tilt_deg=8.0), rescaled=dict(tilt_deg=12.0))  # (uneven: declined)
    assert assert_tree_same_as_full(tmp_path / "in", tmp_path, "--to", "nii")
    assert "warning: series" in _run("convert", str(tmp_path / "in"), str(tmp_path / "again")).stderr


def test_folder_output_existing_files(tmp_path: Path) -> None:
    _multi_series(tmp_path / "in")
    existing = {"7_fMRI_run.nii.gz": b"keep me", "unrelated.txt": b"x"}
    assert not assert_tree_same_as_full(tmp_path / "in", tmp_path, existing=existing)  # the full path fails one
    assert (tmp_path / "fast" / "7_fMRI_run.nii.gz").read_bytes() == b"keep me"
    assert assert_tree_same_as_full(tmp_path / "in", tmp_path, "--overwrite", existing=existing)
    assert (tmp_path / "fast" / "7_fMRI_run.nii.gz").read_bytes() != b"keep me"


@pytest.mark.parametrize("case", ["gap", "monochrome1 series", "pseudonym name", "diffusion", "bad template"])
def test_folder_output_declines_when_any_series_does_not_stream(tmp_path: Path, case: str) -> None:
    extra: tuple[str, ...] = ()
    if case == "gap":
        _multi_series(tmp_path / "in", mr=dict(skip=[4]))
    elif case == "monochrome1 series":
        _multi_series(tmp_path / "in")
        make_monochrome1(tmp_path / "in" / "m1")
    elif case == "pseudonym name":
        _multi_series(tmp_path / "in")
        extra = ("--name", "{Pseudonym}")
    elif case == "diffusion":
        _multi_series(tmp_path / "in", mr=dict(extra={"DiffusionBValue": 1000.0}))
    else:
        _multi_series(tmp_path / "in")
        extra = ("--name", "{PatientName}")
    assert not assert_tree_same_as_full(tmp_path / "in", tmp_path, *extra)


@pytest.mark.conformance
def test_every_conformance_tree_equals_the_full_path_or_declines(tmp_path: Path) -> None:
    folders = sorted(CONFORMANCE.glob("*/In")) if CONFORMANCE.is_dir() else []
    if not folders:
        pytest.skip("real-data sets not available (needs ../shared/conformance)")
    handled = []
    for n, folder in enumerate(folders):
        for to in ("nii", "nifti-gz"):
            if assert_tree_same_as_full(folder, tmp_path / f"{n}{to}", "--to", to, messages=False):
                handled.append(folder.parent.name)
    assert handled, "the fast path handled no real folder at all"


def test_plain_ct_folder_output_imports_no_pydicom_nibabel_sitk_typer(tmp_path: Path) -> None:
    import tempfile

    _multi_series(tmp_path / "in")
    out = Path(tempfile.mkdtemp(prefix="mc"))
    code = ("import sys; from convert._fastcli import try_fast; "
            f"rc = try_fast(['convert', {str(tmp_path / 'in')!r}, {str(out / 'o')!r}, '--to', 'nii']); "
            "heavy = sorted(m for m in ('pydicom', 'nibabel', 'SimpleITK', 'typer', 'pydantic', 'h5py', 'scipy', "
            "'rich', 'nrrd') if m in sys.modules); print(rc, heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    try:
        assert proc.stdout.strip().splitlines()[-1] == "0 []", proc.stdout + proc.stderr
        assert sorted(p.name for p in (out / "o").iterdir()) == sorted(
            f"{s}.{e}" for s in ("3_Head_CT", "7_fMRI_run", "12_Bone_sharp") for e in ("json", "nii"))
    finally:
        shutil.rmtree(out)


def test_tree_progress_reports_every_series_then_done(tmp_path: Path) -> None:
    """Long folder runs report progress per series (the CLI draws it only on a terminal)."""
    from convert._fastcli import _progress_bar
    from convert.dicom.fastpath import convert_tree_fast

    _multi_series(tmp_path / "src")
    calls: list[tuple[int, int, str]] = []
    result = convert_tree_fast(tmp_path / "src", tmp_path / "out", progress=lambda *a: calls.append(a))
    assert result is not None and len(result.outcomes) == 3
    assert [(d, t) for d, t, _ in calls] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert [label for _, _, label in calls[:3]] == [o.label for o in result.outcomes]
    assert calls[-1][2] == "done"
    with _progress_bar() as bar:  # pytest captures stdout: not a terminal, so no bar at all
        assert bar is None


def test_folder_output_with_images_without_position_equals_the_full_path_or_declines(tmp_path: Path) -> None:
    """Images without a position become single-image series (issue 12.5): streamed identically, or declined."""
    from fixtures.dicom_series import make_unplaced_images

    _multi_series(tmp_path / "in")
    make_unplaced_images(tmp_path / "in" / "summary", n=3, series_number=99)
    assert_tree_same_as_full(tmp_path / "in", tmp_path)
    assert len([p for p in (tmp_path / "full").iterdir() if p.name.startswith("99_")]) == 6


def test_tree_with_dcm2niix_postfixed_series_declines_and_the_full_path_names_them(tmp_path: Path) -> None:
    """Echoes / phase get dcm2niix's postfixes (_e1, _e2_ph...): only the full path names them."""
    from convert.dicom import convert_dicom_tree
    from fixtures.dicom_series import make_split_series

    make_split_series(tmp_path / "in", "two-echoes-ge")  # GE files: the fast index takes them
    assert fastpath.convert_tree_fast(tmp_path / "in", tmp_path / "fast") is None
    assert not (tmp_path / "fast").exists() or not any((tmp_path / "fast").iterdir())
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "full", sidecar=False)
    assert sorted(p.name for p in report.written) == ["5_fmap_e1.nii.gz", "5_fmap_e2.nii.gz"]
