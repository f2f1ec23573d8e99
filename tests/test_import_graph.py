"""No import circles anywhere in ``modise`` and no cross-module ``_private`` imports, lazy
(function-level) imports included; every module of the evaluation / prediction / data / viz code
imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
AREA = ("modise.engine.evaluation", "modise.engine.prediction", "modise.data", "modise.viz", "modise.dicom",
        "modise.runs", "modise.engine.reproduce", "modise.engine.reproduce_cli", "modise.engine.eval_cli")
# cross-module private imports still allowed (none)
KNOWN_PRIVATE: set[str] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted((SRC / "modise").rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement, at any depth."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("modise")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("modise"):
                continue
            names = [a.name for a in node.names]
            found.append((target, names))
            found += [(f"{target}.{n}", []) for n in names if f"{target}.{n}" in modules]  # submodules
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {t for t, _ in _imports(m, p, modules) if t in modules and t != m} for m, p in modules.items()}


def _in_area(m: str) -> bool:
    return any(m == a or m.startswith(a + ".") for a in AREA)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _package_edges_dropped(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` importing its own submodules is how packages work, not a circle."""
    return {m: {t for t in ts if not (t.startswith(m + ".") or m.startswith(t + "."))} for m, ts in graph.items()}


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles_anywhere():
    assert _cycles(_package_edges_dropped(_graph())) == []


def test_no_private_names_across_modules():
    modules = _modules()
    bad = []
    for m, p in modules.items():
        for target, names in _imports(m, p, modules):
            if target != m:
                bad += [f"{m} imports {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert sorted(set(bad) - KNOWN_PRIVATE) == []


def test_each_module_imports_alone():
    mods = [m for m in _modules() if _in_area(m)]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    for k in [k for k in sys.modules if k == 'modise' or k.startswith('modise.')]:\n"
        "        del sys.modules[k]\n"
        "    importlib.import_module(m)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC), "PATH": ""}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


PIPELINE_MAY_IMPORT: set[str] = set()  # the run layout (where a run keeps its model) is modise.runs, below both


def test_model_and_pipeline_import_nothing_from_engine():
    """The model and its pipeline sit below the engine (training, evaluation, prediction use them)."""
    bad = sorted(f"{m} imports {t}" for m, ts in _graph().items()
                 if m == "modise.pipeline" or m == "modise.model" or m.startswith("modise.model.")
                 for t in ts if t.startswith("modise.engine") and t not in PIPELINE_MAY_IMPORT)
    assert bad == []


# docs/explanation/architecture.md: floors, lowest first; a module imports only from its own floor or below
FLOORS = [
    ("modise.errors", "modise.outputs", "modise.progress", "modise.precision", "modise.runs", "modise.compat"),
    ("modise.data",),
    ("modise.model",),
    ("modise.pipeline", "modise.checks"),
    ("modise.dicom",),
    ("modise.engine", "modise.synthesis", "modise.baseline", "modise.viz", "modise.app"),
    ("modise.cli", "modise.cli_options", "modise.__main__"),
]


def _floor(module: str) -> int:
    if module.rpartition(".")[2].endswith("cli"):  # every part's *cli.py sits with the CLI
        return len(FLOORS) - 1
    placed = [(len(p), i) for i, prefixes in enumerate(FLOORS) for p in prefixes if module == p or module.startswith(p + ".")]
    assert placed, f"{module} is on no floor of docs/explanation/architecture.md"
    return max(placed)[1]


def test_every_module_imports_only_its_floor_or_below():
    up = sorted(f"{m} imports {t}" for m, ts in _graph().items() if m != "modise"
                for t in ts if t != "modise" and _floor(t) > _floor(m))
    assert up == []


def test_the_architecture_page_lists_the_same_floors():
    """docs/explanation/architecture.md numbers the floors as FLOORS does, each naming its packages."""
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "explanation" / "architecture.md").read_text()
    items = re.findall(r"^\d+\. (.*?)(?=^\d+\. |^\S|\Z)", page, re.S | re.M)
    assert len(items) == len(FLOORS), f"the page lists {len(items)} floors, FLOORS {len(FLOORS)}"
    for i, (item, prefixes) in enumerate(zip(items, FLOORS), 1):
        for p in prefixes:
            leaf = p.rpartition(".")[2]
            if leaf != "__main__":
                assert f"`{leaf}.py`" in item or f"`{leaf}/`" in item, f"floor {i} of the page does not name {p}"
