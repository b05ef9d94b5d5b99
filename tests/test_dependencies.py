"""The package's folders depend one way: an import goes down the layers, never up, never round.

From the bottom (docs/architecture.md says why in this order):

    base helpers   jessl (the version), files, runtime, errors, schedules, checkpoint,
                   losses, queues, distributed: no import of a jessl folder
    data           dataset file, reader, ops, views, loader; `data.facts` holds the view-size
                   rule (SMALL_IMAGE_PX) that config, trainer and eval all decide with
    models         backbones and heads
    methods        one file a method, on losses, models and the EMA schedule
    config         RunConfig: checks names against the data, model and method registries
                   and flags, which makes command-line options of its dataclasses
    eval           features once, kNN, RankMe, probes; reads a run's config and checkpoint
    train          the trainer loop, which monitors with eval's kNN and RankMe
    studies, benchmarks, quickstart
    cli            `jessl ...`: dispatches to the commands of every folder

A unit is a folder or a module directly under jessl/. Imports are read with `ast` from every
file, inside functions too (a lazy import is a dependency all the same), so the test needs no
import of jessl itself and runs in well under a second.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jessl"

LAYERS = [  # bottom first; an import may go to its own layer (if acyclic) or any layer below
    {"jessl", "files", "runtime", "errors", "schedules", "checkpoint", "losses", "queues",
     "distributed"},
    {"data"},
    {"models"},
    {"methods"},
    {"config", "flags"},
    {"eval"},
    {"train"},
    {"studies", "benchmarks", "quickstart"},
    {"cli", "__main__"},
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every jessl import in `path`, at any depth."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up (level - 1) packages from this file's package
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            # `from jessl import distributed` names a module; `from x import name` its parent
            found += [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return [(name, line) for name, line in found if name.split(".")[0] == "jessl"]


def _unit(module: str) -> str:
    """jessl.data.reader -> data; jessl.config.RunConfig -> config; jessl.__version__ -> jessl."""
    parts = module.split(".")
    if len(parts) < 2:
        return "jessl"
    first = parts[1]
    if (PACKAGE / first).is_dir() or (PACKAGE / f"{first}.py").is_file():
        return first
    return "jessl"  # a name defined in jessl/__init__.py


def unit_imports() -> dict[tuple[str, str], list[str]]:
    """{(importing unit, imported unit): ["file:line", ...]} over the whole package."""
    edges = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _unit(_module_name(path))
        for name, line in _imported(path):
            dst = _unit(name)
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if dst != src and where not in edges[src, dst]:
                edges[src, dst].append(where)
    return dict(edges)


def _cycles(edges) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan)."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def _layer(unit: str) -> int:
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise AssertionError(f"jessl/{unit} is in no layer: add it to LAYERS (and "
                         f"docs/architecture.md) where its imports allow")


def test_the_imports_are_read():
    edges = unit_imports()
    # known edges, one per kind of import: inside a function only (config -> methods),
    # relative (methods -> losses), `from jessl import module` (train -> distributed) and
    # `from jessl import name` (cli -> jessl/__init__.py's __version__)
    assert ("config", "methods") in edges and ("methods", "losses") in edges
    assert ("train", "distributed") in edges and ("cli", "jessl") in edges


def test_no_two_units_import_each_other():
    edges = unit_imports()
    both = [f"{a} <-> {b}: {edges[a, b][0]} and {edges[b, a][0]}"
            for a, b in edges if (b, a) in edges and a < b]
    assert not both, "folders that import each other:\n" + "\n".join(both)


def test_no_circle_of_imports():
    assert not _cycles(unit_imports())


def test_imports_go_down_the_layers():
    up = [f"{a} -> {b} ({', '.join(where[:3])})" for (a, b), where in unit_imports().items()
          if _layer(b) > _layer(a)]
    assert not up, "imports that go up the layers of the module docstring:\n" + "\n".join(up)


def test_the_checks_catch_a_circle():
    """The wrong variant: a circle of three and a pair are found."""
    assert _cycles({("a", "b"): [], ("b", "c"): [], ("c", "a"): [], ("d", "a"): []}) == \
        [["a", "b", "c"]]
    assert _cycles({("a", "b"): [], ("b", "a"): []}) == [["a", "b"]]
