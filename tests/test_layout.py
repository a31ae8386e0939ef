"""The package layout's import rules, read from the source with ``ast`` (nothing is imported).

Every import counts, at module level or inside a function (a lazy import is still a
dependency, and one moved inside a function to dodge a circle is still a circle: the two
modules cannot be read, tested or changed apart): servers, clients and protocol never import
bench; protocol imports neither servers nor clients; bench's parts (its subpackages and its top
modules) import each other without a cycle; and inside every package and subpackage, its
modules (its ``__init__`` among them) import each other without a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "protocol", "servers", "clients")


def modules(package: str) -> list[Path]:
    """Every Python file of a package (build folders hold none)."""
    return sorted((REPO / package).rglob("*.py"))


def dotted(path: Path, root: Path = REPO) -> str:
    """bench/run/runner.py -> bench.run.runner; bench/run/__init__.py -> bench.run."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def imports(path: Path, root: Path = REPO) -> tuple[str, ...]:
    """The modules a file imports, anywhere in it, as absolute dotted names (for ``from X
    import y``, both X and X.y: y may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = dotted(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append(base)
            found += [f"{base}.{alias.name}" for alias in node.names]
    return tuple(found)


def top(name: str) -> str:
    return name.partition(".")[0]


def bench_part(name: str) -> str | None:
    """The part of bench a dotted name belongs to: a subpackage (run, analysis...), a top
    module (store, cli...) or the package itself; None outside bench, or for a name that is
    no module (``from bench import REPO_ROOT``)."""
    parts = name.split(".")
    if parts[0] != "bench":
        return None
    if len(parts) == 1:
        return "bench"
    if (REPO / "bench" / parts[1]).is_dir() or (REPO / "bench" / f"{parts[1]}.py").is_file():
        return parts[1]
    return None


def bench_graph() -> dict[str, set[str]]:
    """Part -> the other parts it imports."""
    graph: dict[str, set[str]] = {}
    for path in modules("bench"):
        source = bench_part(dotted(path))
        assert source is not None, path
        edges = graph.setdefault(source, set())
        edges.update(part for name in imports(path)
                     if (part := bench_part(name)) is not None and part != source)
    return graph


def package_graphs(root: Path = REPO, packages: tuple[str, ...] = PACKAGES
                   ) -> dict[str, dict[str, set[str]]]:
    """Package (or subpackage) -> its modules, each with the modules of that same package it
    imports (its ``__init__`` under the package's own name)."""
    graphs: dict[str, dict[str, set[str]]] = {}
    for package in packages:
        for init in sorted((root / package).rglob("__init__.py")):
            folder = init.parent
            members = {dotted(path, root): path for path in sorted(folder.glob("*.py"))}
            members.update({dotted(sub / "__init__.py", root): sub / "__init__.py"
                            for sub in folder.iterdir() if (sub / "__init__.py").is_file()})
            graphs[dotted(init, root)] = {
                name: {other for other in imports(path, root)
                       if other in members and other != name}
                for name, path in members.items()}
    return graphs


def cycles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Each cycle found by a depth-first walk, as the path that closes it."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> Iterator[list[str]]:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                yield [*path[path.index(nxt):], nxt]
            elif nxt not in state:
                yield from visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            yield from visit(node)


def offenders(package: str, forbidden: set[str]) -> list[str]:
    return [f"{path.relative_to(REPO)} imports {name}" for path in modules(package)
            for name in imports(path) if top(name) in forbidden]


@pytest.mark.parametrize("package", ["servers", "clients", "protocol"])
def test_nothing_imports_bench_back(package: str) -> None:
    assert offenders(package, {"bench"}) == []


def test_protocol_imports_neither_servers_nor_clients() -> None:
    assert offenders("protocol", {"servers", "clients"}) == []


def test_bench_parts_import_each_other_without_a_cycle() -> None:
    graph = bench_graph()
    assert {"run", "analysis", "report", "regress", "selfcheck", "store", "cli"} <= set(graph)
    found = [" -> ".join(cycle) for cycle in cycles(graph)]
    assert found == [], f"import cycles among bench's parts: {found}"


def test_modules_inside_each_package_import_each_other_without_a_cycle() -> None:
    graphs = package_graphs()
    assert {"clients", "clients.worker", "bench.selfcheck", "bench.run"} <= set(graphs)
    found = [" -> ".join(cycle) for graph in graphs.values() for cycle in cycles(graph)]
    assert found == [], f"import cycles between modules of one package: {found}"


def test_a_circle_planted_inside_a_package_is_found(tmp_path: Path) -> None:
    """A module-level circle (a imports b, b imports a) and a lazy one (inside a function)
    in packages of the same shape are each reported; a package without one is not."""
    package = tmp_path / "pkg"
    for sub in ("plain", "loop"):
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "plain" / "a.py").write_text("from pkg.plain import b\n")
    (package / "plain" / "b.py").write_text("import os\n")
    (package / "loop" / "a.py").write_text("from pkg.loop import b\n")
    (package / "loop" / "b.py").write_text("from .a import x\n")
    (package / "c.py").write_text("from . import d\n")
    (package / "d.py").write_text("def f() -> None:\n    from pkg import c\n")
    graphs = package_graphs(tmp_path, ("pkg",))
    assert list(cycles(graphs["pkg.plain"])) == []
    assert list(cycles(graphs["pkg.loop"])) == [["pkg.loop.a", "pkg.loop.b", "pkg.loop.a"]]
    assert list(cycles(graphs["pkg"])) == [["pkg.c", "pkg.d", "pkg.c"]]


def test_the_checker_sees_function_level_imports_and_cycles() -> None:
    """The rules above can fail: a lazy import is found, and a planted cycle is reported."""
    assert "bench.report.document" in imports(REPO / "bench" / "run" / "run.py")
    graph = {"run": {"report"}, "report": {"analysis"}, "analysis": {"run", "store"}}
    assert list(cycles(graph)) == [["analysis", "run", "report", "analysis"]]
    assert list(cycles({"a": {"b"}, "b": set()})) == []


MOST_LINES = 500
# modules allowed over MOST_LINES, each because it holds one idea that does not split
ONE_IDEA = {
    "bench/hosts/netns.py": "the namespace testbed's lifecycle (make, check, remove, also on "
                            "failure) and the command line that drives it; its tests patch "
                            "and run it as one module",
}


def test_no_module_is_over_500_lines_but_those_that_hold_one_idea() -> None:
    sizes = {str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
             for package in PACKAGES for path in modules(package)}
    assert set(ONE_IDEA) <= set(sizes), "a module named in ONE_IDEA is gone: take it out"
    long = sorted(name for name, lines in sizes.items()
                  if lines > MOST_LINES and name not in ONE_IDEA)
    assert long == [], f"over {MOST_LINES} lines, split them by idea: {long}"
