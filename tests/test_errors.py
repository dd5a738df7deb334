"""convert.errors: one message, two spellings (CLI flags on the command line, API keywords in Python)."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import convert
from convert.cli import app
from convert.errors import API_SPELLINGS, OutputExistsError, cli_spelling, spell

runner = CliRunner()


def test_an_error_names_the_cli_flag_on_the_command_line_and_the_keyword_in_python() -> None:
    error = OutputExistsError("output already exists; pass --overwrite to replace it", "/tmp/x.nii")
    assert str(error) == "/tmp/x.nii: output already exists; pass overwrite=True to replace it"
    with cli_spelling():
        assert str(error) == "/tmp/x.nii: output already exists; pass --overwrite to replace it"
    assert "overwrite=True" in str(error)  # the context ends with the block


def test_spell_leaves_unknown_flags_and_words_with_dashes_alone() -> None:
    text = "use --allow-burned-in, not --allow-burned-in-please; --key FILE; well-known --to nifti"
    assert spell(text) == "use allow_burned_in=True, not --allow-burned-in-please; --key FILE; well-known to='nifti'"


def test_overwrite_message_cli_spelling_only(tmp_path) -> None:
    """The quirk: the CLI said ``--overwrite (overwrite=True)``: two spellings in one line."""
    volume = convert.Volume(np.zeros((3, 3, 3), np.int16), np.eye(4))
    convert.save(volume, tmp_path / "a.nii")
    result = runner.invoke(app, ["convert", str(tmp_path / "a.nii"), str(tmp_path / "b.nii")])
    assert result.exit_code == 0
    again = runner.invoke(app, ["convert", str(tmp_path / "a.nii"), str(tmp_path / "b.nii")])
    assert again.exit_code == 1 and "--overwrite" in again.output and "overwrite=True" not in again.output
    with pytest.raises(OutputExistsError) as info:
        convert.save(volume, tmp_path / "a.nii")
    assert "overwrite=True" in str(info.value) and "--overwrite" not in str(info.value)


def _cli_flags() -> set[str]:
    import typer

    group = typer.main.get_command(app)
    flags: set[str] = set()
    for command in group.commands.values():  # type: ignore[attr-defined]
        for param in command.params:
            if getattr(param, "param_type_name", "") == "option":  # typer may bundle its own click
                flags.update(param.opts)
    return flags


def test_every_spelled_flag_is_a_real_cli_option_and_a_real_api_keyword() -> None:
    from convert.anonymize.run import anonymize_path
    from convert.batch import convert_dicom_tree
    from convert.dicom.reader import read_series

    flags = _cli_flags()
    keywords: set[str] = set()
    for fn in (convert.save, convert.convert, read_series, convert_dicom_tree, anonymize_path):
        keywords.update(inspect.signature(fn).parameters)
    for flag, keyword in API_SPELLINGS.items():
        assert flag in flags, f"{flag} is not a medconvert option"
        assert keyword.split("=")[0] in keywords, f"{keyword} is not an API keyword"


def test_reading_names_the_file_in_every_error_of_an_adapter_read(tmp_path):
    from convert.errors import CorruptFileError, GeometryError, UnsupportedDataError, reading

    path = tmp_path / "x.mnc"
    with pytest.raises(GeometryError) as info:
        with reading(path, "this MINC2 file", "cannot read MINC2 file", (OSError,)):
            raise GeometryError("affine is singular")
    assert info.value.path == path
    assert info.value.message == "invalid geometry or data in this MINC2 file: affine is singular"
    with pytest.raises(CorruptFileError, match=r"x\.mnc: cannot read MINC2 file: short read") as broken:
        with reading(path, "this MINC2 file", "cannot read MINC2 file", (OSError,)):
            raise OSError("short read")
    assert isinstance(broken.value.__cause__, OSError)
    named = UnsupportedDataError("vector images are not supported", tmp_path / "other.mnc")
    with pytest.raises(UnsupportedDataError) as kept:
        with reading(path, "this MINC2 file", "cannot read MINC2 file", (OSError,)):
            raise named
    assert kept.value is named  # already names its file: unchanged
    with pytest.raises(KeyError):  # anything else is a bug: not disguised as a corrupt file
        with reading(path, "this MINC2 file", "cannot read MINC2 file", (OSError,)):
            raise KeyError("x")


def test_errors_imports_nothing_of_the_package_and_learns_format_names_from_the_registry() -> None:
    """ARCHITECTURE.md: errors is at the bottom; the registry tells it the names ``--to`` takes."""
    import ast

    import convert.errors as errors
    from convert.formats import all_formats

    tree = ast.parse(Path(errors.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [name for name in imported if name == "convert" or name.startswith("convert.")]
    assert errors._format_names() == {f.name for f in all_formats()}  # noqa: SLF001
    assert spell("--to dicom-seg --reference DIR; --to with") == "to='dicom-seg' --reference DIR; to='<format>' with"
