"""Check the package layout rules of ARCHITECTURE.md on convert/ (issue 13, item 5).

    python tools/check_layout.py [--alone]

Prints, and exits 1 when any is found:

* private names imported from another module (``from convert.x import _y``, or
  ``module._y`` on an imported convert module);
* import circles among module-level imports (what runs when a module is imported);
* import circles that only exist through imports inside functions ("lazy circle"): a lazy
  import still makes the two modules depend on each other, so the code belongs lower down
  (ARCHITECTURE.md: imports point downwards only);
* attributes set on a Volume outside ``convert/volume.py`` (``object.__setattr__(volume, ...)``).

``--alone`` also imports every module on its own in a fresh interpreter (about
0.3 s a module), which finds circles that break an import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "convert"


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """``{dotted name: file}`` of every module below ``root`` (a package's name for its ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(tree: ast.AST, lazy: bool) -> list[ast.stmt]:
    """Import statements of a module: module level only (not under ``if TYPE_CHECKING``), or every one."""
    nodes = ast.walk(tree) if lazy else iter(getattr(tree, "body", []))
    return [n for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))]


def private_imports(root: Path = PACKAGE) -> list[str]:
    """Places where a module uses another module's private name."""
    found = []
    for name, path in modules(root).items():
        tree = ast.parse(path.read_text())
        imported: dict[str, str] = {}  # local name -> convert module it stands for
        for node in _imports(tree, lazy=True):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("convert"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path}:{node.lineno}: from {node.module} import {alias.name}")
                    imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("convert") and alias.asname:
                        imported[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in imported):
                found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr} ({imported[node.value.id]})")
    return found


def import_cycles(root: Path = PACKAGE, lazy: bool = False) -> list[tuple[str, ...]]:
    """Circles in the graph of imports between convert modules (``lazy``: imports inside functions too)."""
    mods = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in _imports(ast.parse(path.read_text()), lazy):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("convert"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in mods else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("convert"))
        graph[name] = {d for d in deps if d in mods and d != name}
    cycles: set[tuple[str, ...]] = set()

    def walk(node: str, stack: list[str], seen: set[str]) -> None:
        for dep in sorted(graph[node]):
            if dep in stack:
                cycle = stack[stack.index(dep):]
                start = cycle.index(min(cycle))
                cycles.add(tuple(cycle[start:] + cycle[:start]))
            elif dep not in seen:
                seen.add(dep)
                walk(dep, stack + [dep], seen)

    for name in graph:
        walk(name, [name], {name})
    return sorted(cycles)


def volume_patches(root: Path = PACKAGE) -> list[str]:
    """``object.__setattr__`` calls outside convert/volume.py whose target is called ``volume`` or ``vol``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "volume.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__setattr__"
                    and node.args and isinstance(node.args[0], ast.Name) and "vol" in node.args[0].id.lower()):
                found.append(f"{path}:{node.lineno}: object.__setattr__({node.args[0].id}, ...)")
    return found


def imports_alone(root: Path = PACKAGE, python: str = sys.executable) -> list[str]:
    """Modules that fail ``import`` in a fresh interpreter, with the last line of the error."""
    failed = []
    for name in modules(root):
        result = subprocess.run([python, "-c", f"import {name}"], capture_output=True, text=True)
        if result.returncode:
            failed.append(f"{name}: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return failed


def main(argv: list[str], root: Path = PACKAGE) -> int:
    """Print every problem found below ``root`` and a summary line; 1 when there is any, else 0."""
    circles = import_cycles(root)
    problems = private_imports(root) + [" -> ".join(c + (c[0],)) for c in circles] + volume_patches(root)
    problems += ["lazy circle (imports inside functions): " + " -> ".join(c + (c[0],))
                 for c in import_cycles(root, lazy=True) if c not in circles]
    if "--alone" in argv:
        problems += imports_alone(root)
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s), {len(modules(root))} modules")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
