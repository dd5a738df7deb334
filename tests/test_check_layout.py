"""tools/check_layout.py, and the layout rules it checks holding on convert/ (ARCHITECTURE.md)."""

from __future__ import annotations

import runpy
from pathlib import Path

from tests.conftest import REPO

check = runpy.run_path(str(REPO / "tools" / "check_layout.py"))


def test_no_module_imports_another_modules_private_names():
    assert check["private_imports"]() == []


def test_no_import_circles_among_module_level_imports():
    assert check["import_cycles"]() == []


def test_no_import_circles_through_imports_inside_functions_either():
    assert check["import_cycles"](lazy=True) == []


def test_the_layout_check_passes_on_convert(capsys):
    assert check["main"]([]) == 0
    assert capsys.readouterr().out.startswith("0 problem(s), ")


def test_no_attributes_are_patched_onto_a_volume():
    assert check["volume_patches"]() == []


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "convert"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checks_find_what_they_look_for(tmp_path: Path):
    root = _package(tmp_path, {
        "a.py": "from convert.b import _hidden\nimport convert.b as bee\nx = bee._other\n",
        "b.py": "import convert.a\n\ndef f():\n    from convert.c import y\n",
        "c.py": "def g():\n    from convert import b\n\nclass T:\n    def h(self, volume):\n"
                "        object.__setattr__(volume, '_warnings', ())\n",
    })
    assert [line.split(": ", 1)[1] for line in check["private_imports"](root)] == [
        "from convert.b import _hidden", "bee._other (convert.b)"]
    assert check["import_cycles"](root) == [("convert.a", "convert.b")]
    assert ("convert.b", "convert.c") in check["import_cycles"](root, lazy=True)
    assert [line.split(": ", 1)[1] for line in check["volume_patches"](root)] == ["object.__setattr__(volume, ...)"]


def test_a_lazy_circle_fails_the_check(tmp_path: Path, capsys):
    """A circle closed only by an import inside a function is a problem too (exit 1), not information."""
    root = _package(tmp_path, {
        "low.py": "def f():\n    from convert import high\n",
        "high.py": "from convert import low\n",
    })
    assert check["import_cycles"](root) == []
    assert check["main"]([], root) == 1
    out = capsys.readouterr().out
    assert "lazy circle (imports inside functions): convert.high -> convert.low -> convert.high" in out
    assert out.splitlines()[-1] == "1 problem(s), 3 modules"
    (root / "low.py").write_text("def f():\n    return 1\n")  # the code moved down: no circle
    assert check["main"]([], root) == 0
