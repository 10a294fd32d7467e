"""The tree is the architecture: no import cycle in src/ (function-level imports included) and no import points up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Layers, top first: a module may import its own layer and the ones below, never one above. Entry points and the
# orchestration that runs stages sit on top; stages/ in the middle; everything else (config, data, metrics, scoring,
# mlops, ...) below, so nothing a stage uses can reach back into a stage or the CLI.
TOP = ("facerealism.cli", "facerealism.enhance", "facerealism.sweep", "facerealism.trials", "facerealism.orchestration",
       "facerealism.bench")
STAGES = ("facerealism.stages",)


def layer(module: str) -> int:
    """2: entry points and orchestration; 1: stages; 0: everything they use."""
    if any(module == p or module.startswith(p + ".") for p in TOP):
        return 2
    if any(module == p or module.startswith(p + ".") for p in STAGES):
        return 1
    return 0


def module_files(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__) for every .py under root."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def import_graph(root: Path, package: str = "facerealism") -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (module level, functions, TYPE_CHECKING).

    `from pkg import name` counts as importing pkg.name when that is a module, else pkg itself. A package's __init__
    is not counted as imported by its submodules (Python runs it first, but it is not an edge they choose).
    """
    modules = module_files(root)
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in modules.items():
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - node.level + 1]
                    source = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a name inside a module: its module
                    target = target.rpartition(".")[0]
                if target and (target == package or target.startswith(package + ".")) and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search, three colours)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = BLACK
                stack.pop()
                path.pop()
            elif colour.get(child, BLACK) == GREY:
                return path[path.index(child):] + [child]
            elif colour.get(child) == WHITE:
                colour[child] = GREY
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
    return None


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_detector_finds_a_cycle_hidden_in_a_function_level_import(tmp_path):
    root = write(tmp_path, {
        "facerealism/__init__.py": "",
        "facerealism/a.py": "from facerealism import b\n",
        "facerealism/b.py": "def f():\n    from facerealism.pkg.c import x\n",
        "facerealism/pkg/__init__.py": "",
        "facerealism/pkg/c.py": "x = 1\ndef g():\n    import facerealism.a\n",
    })
    graph = import_graph(root)
    assert graph["facerealism.b"] == {"facerealism.pkg.c"} and graph["facerealism.pkg.c"] == {"facerealism.a"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"facerealism.a", "facerealism.b",
                                                                           "facerealism.pkg.c"}


def test_the_detector_resolves_relative_imports_and_passes_a_dag(tmp_path):
    root = write(tmp_path, {
        "facerealism/__init__.py": "",
        "facerealism/pkg/__init__.py": "from . import c\n",
        "facerealism/pkg/c.py": "from ..d import y\n",
        "facerealism/d.py": "y = 2\n",
    })
    graph = import_graph(root)
    assert graph["facerealism.pkg"] == {"facerealism.pkg.c"} and graph["facerealism.pkg.c"] == {"facerealism.d"}
    assert find_cycle(graph) is None
    graph["facerealism.d"].add("facerealism.pkg")  # planted: d -> pkg -> c -> d
    assert find_cycle(graph) is not None


def test_src_has_no_import_cycle():
    cycle = find_cycle(import_graph(SRC))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module, expected", [("facerealism.cli", 2), ("facerealism.orchestration.dag", 2),
                                              ("facerealism.stages.train", 1), ("facerealism.scoring.gate", 0),
                                              ("facerealism.head", 0)])
def test_layers(module, expected):
    assert layer(module) == expected


def test_imports_only_point_down():
    graph = import_graph(SRC)
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if layer(d) > layer(m))
    assert not upward, "imports from a lower layer into stages/ or an entry point:\n" + "\n".join(upward)


def test_every_package_states_its_concern_in_its_first_line():
    for init in sorted((SRC / "facerealism").rglob("__init__.py")):
        if init.parent.name == "facerealism":
            continue
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.splitlines()[0].strip(), f"{init.relative_to(SRC)} has no one-line docstring"


# What the package root may hold: what a user runs (cli, enhance, sweep, trials), what a registered model imports when it
# loads (head, files, errors: see mlops/pyfunc.py), the environment switch every entry point reads first, and the
# machine's precision (training, benchmarks and the GPU kit pick bf16 only where it is native).
ROOT_MODULES = {"__init__", "cli", "enhance", "sweep", "trials", "head", "files", "errors", "env", "precision"}


def test_the_package_root_holds_only_entry_points_and_what_models_import():
    found = {p.stem for p in (SRC / "facerealism").glob("*.py")}
    assert found <= ROOT_MODULES, sorted(found - ROOT_MODULES)
