"""The README's two commands are the ones CI runs (keep both true)."""

from __future__ import annotations

import re

from tests.conftest import REPO


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_starts_with_install_and_test_commands():
    install, test = _readme_commands()
    assert install.startswith("pip install") and "medconvert sample" in install and "medconvert convert" in install
    assert "pytest" in test


def test_ci_runs_exactly_the_readme_commands():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    for command in _readme_commands():
        assert command in ci, f"README command not run verbatim by .ci/run: {command}"
