"""The package layout: every module imports, no import circle, and each package imports only
the layers below it (as its __init__ says). Read from the source with ast: lazy imports inside
functions count too."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "batchwise"
# Top-level modules: the base that every layer may use, and the entry points that may use anything.
BASE = {"config", "files", "provenance"}
ENTRY = {"__main__", "checks"}
# Package -> what it may import (besides itself and the base); lowest layer first.
LAYERS = {
    "data": set(),
    "engine": {"data"},
    "speed": {"data", "engine"},
    "results": {"data", "engine", "speed.estimate"},
    "analysis": {"data", "engine", "results"},
    "report": {"data", "engine", "results", "analysis"},
}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PKG).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The batchwise modules that module `name` imports (anywhere in it but `if TYPE_CHECKING:`)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    skip = {id(n) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.If) and _type_checking(node) for n in ast.walk(node)}
    for node in ast.walk(ast.parse(path.read_text())):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PKG}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                source = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != PKG:
                continue
            for a in node.names:
                found.add(f"{source}.{a.name}" if f"{source}.{a.name}" in known else source)
    return {m for m in found if m in known} - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def unit(module: str) -> str:
    """The layer unit of a module: its package, or the top-level module's own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def allowed(importer: str, imported: str) -> bool:
    a, b = unit(importer), unit(imported)
    if a in ENTRY or b in BASE or a == b or a == "" or b == "":
        return True
    if a in BASE or a not in LAYERS:
        return False
    may = LAYERS[a]
    return b in may or any(imported == f"{PKG}.{m}" or imported.startswith(f"{PKG}.{m}.") for m in may)


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_top_level_is_base_entry_points_or_packages():
    top = {p.stem for p in (SRC / PKG).glob("*.py")} - {"__init__"}
    assert top <= BASE | ENTRY, f"top-level modules outside the layers: {sorted(top - BASE - ENTRY)}"
    packages = {p.parent.name for p in (SRC / PKG).glob("*/__init__.py")}
    assert packages == set(LAYERS), f"packages {sorted(packages)} vs the layers {sorted(LAYERS)}"
    for pkg in packages:
        doc = ast.get_docstring(ast.parse((SRC / PKG / pkg / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"{pkg}/__init__.py: its docstring should say what it may import"


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_packages_import_only_lower_layers():
    bad = [f"{a} imports {b}" for a, deps in graph().items() for b in sorted(deps) if not allowed(a, b)]
    assert not bad, "imports against the layers (see each package's __init__):\n" + "\n".join(bad)


def test_the_checks_can_fail():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert not allowed(f"{PKG}.data.prepare", f"{PKG}.engine.train")
    assert not allowed(f"{PKG}.config", f"{PKG}.data.prepare")
    assert allowed(f"{PKG}.report.document", f"{PKG}.analysis.stats")
