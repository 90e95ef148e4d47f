"""The project source files a module runs: the static closure of its imports, within the package.

Two users: the dependency test (every file a DVC stage runs is a declared dep of that stage) and the
checkpoint fingerprint (a killed training run resumes only under the same training code, and a change to,
say, a figure module does not throw its progress away).

Static: every ``import`` / ``from ... import`` anywhere in a file (module level or inside a function) counts,
whether or not that line runs, except under ``if TYPE_CHECKING:`` (never runs); importing ``a.b.c`` also runs
``a/__init__.py`` and ``a/b/__init__.py``. Modules outside the package (torch, transformers, ...) are left out:
pinned versions cover them. ``stages.config`` is imported by the stages only for type checking: the CLI builds
the Config from params.yaml, every key of which is set there (tests/test_config.py), and dvc.yaml tracks
those values as params.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "stages"
PACKAGE_DIR = Path(__file__).resolve().parent


def module_file(name: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The file of module ``name`` (``stages.x.y``) under ``package_dir``, or None if it is not one of ours."""
    parts = name.split(".")
    if parts[0] != package_dir.name:
        return None
    base = package_dir.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, package_dir: Path) -> str:
    rel = path.relative_to(package_dir.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> [``a``, ``a.b``, ``a.b.c``]: importing a module runs its packages' ``__init__`` first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree: ast.AST):
    """Import statements that can run: all of them except those under ``if TYPE_CHECKING:``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if not _is_type_checking(child):
                todo.append(child)
            else:
                todo.extend(child.orelse)


def imported_names(path: Path, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """Names of the modules (and candidate submodules) one file imports, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path, package_dir)
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..a import b
                anchor = here.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            # `from pkg import mod` imports the submodule pkg.mod when there is one
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def import_closure(module: str, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Every file of the package that importing ``module`` may run, sorted; ``module`` itself included."""
    seen: set[Path] = set()
    todo = list(_with_parents(module))
    while todo:
        name = todo.pop()
        path = module_file(name, package_dir)
        if path is None or path in seen:
            continue
        seen.add(path)
        for imported in imported_names(path, package_dir):
            todo.extend(_with_parents(imported))
    return sorted(seen)
