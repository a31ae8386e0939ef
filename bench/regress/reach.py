"""Which models a change can reach: ``git diff --name-only BASE`` against the models' imports.

A model is reached when a changed file is one its server runs: its own module, any module of
``servers/`` or ``protocol/`` it imports (transitively, read from the source with ``ast``, as
the head has it), a data folder beside its module (``servers/native/`` for ``native``), or a
file every model runs: the launcher (``servers/__init__.py``, ``servers/__main__.py``),
``servers/_base.py``, ``servers/_eventloop.py`` and all of ``protocol/``. Files outside
``servers/`` and ``protocol/`` (the harness, the docs, the tests) reach no model: the gate
drives both sides with the head's harness.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGES = ("servers", "protocol")
EVERY_MODEL = ("protocol/", "servers/__init__.py", "servers/__main__.py", "servers/_base.py",
               "servers/_eventloop.py")


def module_file(module: str, root: Path) -> str | None:
    """``servers.epoll`` -> ``servers/epoll.py`` (or the package's ``__init__.py``)."""
    parts = module.split(".")
    for candidate in (Path(*parts).with_suffix(".py"), Path(*parts, "__init__.py")):
        if (root / candidate).is_file():
            return candidate.as_posix()
    return None


def imported_modules(path: Path) -> set[str]:
    """Modules of our packages that ``path`` imports (``from servers import epoll`` counts
    both ``servers`` and ``servers.epoll``)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def files_run_by(module: str, root: Path) -> set[str]:
    """Every file of our packages that importing ``module`` runs (transitively)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = module_file(name, root)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(imported_modules(root / path))
        parent = name.rpartition(".")[0]  # importing a.b runs a/__init__.py first
        if parent:
            todo.append(parent)
    return seen


def reaches(changed: str, files: set[str], module_path: str | None) -> bool:
    """Whether one changed file reaches a model running ``files``."""
    if changed.startswith(EVERY_MODEL[0]) or changed in EVERY_MODEL[1:] or changed in files:
        return True
    if module_path is None:
        return False
    data_dir = module_path.removesuffix(".py").rstrip("_") + "/"  # servers/native.py -> native/
    return changed.startswith(data_dir)


def reached_models(changed: Iterable[str], modules: Mapping[str, str], root: Path
                   ) -> dict[str, str]:
    """Model -> the first changed file that reaches it, for the models some change reaches."""
    changed = sorted(changed)
    found: dict[str, str] = {}
    for model, module in modules.items():
        files = files_run_by(module, root)
        path = module_file(module, root)
        hit = next((f for f in changed if reaches(f, files, path)), None)
        if hit is not None:
            found[model] = hit
    return found
