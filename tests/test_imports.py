"""The tree is the architecture: no import cycle in src/ or flows/ (function-level and importlib imports included), and
every import between packages points down the layer order below."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
# (folder, package) pairs that make up the project's import graph: the library and the Prefect flows that wire it.
SOURCES = ((SRC, "facerealism"), (REPO, "flows"))
PROJECT = tuple(package for _, package in SOURCES)

# The layer order, top first, read off the tree: a package may import its own modules and any package in a layer
# below its own, never one beside or above it. A new package (or root module) must be placed here before it passes.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("facerealism.cli",),                                                     # what a user types
    ("facerealism.bench",),                                                   # measurements: they time the flows
    ("flows",),                                                               # Prefect wiring the CLI starts
    ("facerealism.enhance", "facerealism.sweep", "facerealism.trials",        # what the flows and the CLI call
     "facerealism.rating"),
    ("facerealism.orchestration",),                                           # how the stages run
    ("facerealism.stages",),                                                  # the pipeline's stages
    ("facerealism.mlops", "facerealism.trainers", "facerealism.speed", "facerealism.quality"),
    ("facerealism.report",),                                                  # what a run shows: Table 4, grids
    ("facerealism.scoring",),                                                 # Table 4's columns, photo rules, gate
    ("facerealism.presets",),                                                 # model pairs, one folder each
    ("facerealism.backends", "facerealism.head", "facerealism.metrics",
     "facerealism.cluster"),                                                  # Dask clusters for sharded stages
    ("facerealism.config", "facerealism.data", "facerealism.models"),
    ("facerealism.files", "facerealism.precision", "facerealism.progress"),  # files; precision; progress lines
    ("facerealism.errors", "facerealism.env", "facerealism"),               # what everything may read
)
LEVEL = {package: depth for depth, row in enumerate(LAYERS) for package in row}  # 0: top

# Upward imports the tree still has, each with why it is tolerated for now. test_known_upward_imports_still_exist
# fails once one is gone, so this list cannot outlive the problem it names.
KNOWN_UPWARD = {
    ("facerealism.config.evaluate", "facerealism.scoring.controls"):
        "config validates evaluate.controls against scoring's registry of control names (issue #37, item 2)",
    ("facerealism.config.evaluate", "facerealism.scoring.fitted"):
        "config validates evaluate.fitted against scoring's registry of fitted baselines (issue #37, item 2)",
    ("facerealism.config.evaluate", "facerealism.metrics.spaces"):
        "config validates evaluate.spaces against metrics' registry of feature spaces (issue #37, item b)",
    ("facerealism.config.register", "facerealism.scoring.photo"):
        "register.photo_max's default is each photo rule's own ceiling, defined with the rule (issue #37, item 2)",
}


def package_of(module: str) -> str:
    """The layer unit of a module: facerealism.<sub-package or root module>, or the top package itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "facerealism" and len(parts) > 1 else parts[0]


def layer(module: str) -> int:
    """The depth of module's package in LAYERS (0: top); KeyError for a package no layer names."""
    return LEVEL[package_of(module)]


def module_files(sources=SOURCES) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__) for every .py of each (folder, package) in sources."""
    out = {}
    for root, package in sources:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _importlib_targets(node: ast.Call, modules: dict) -> list[str]:
    """Modules an importlib.import_module(...) / import_module(...) / __import__(...) call can load: a literal name,
    or every module under the literal prefix of an f-string such as f"facerealism.stages.{name}"."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return []
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        prefix = str(arg.values[0].value)
        return [m for m in modules if m.startswith(prefix)] or [prefix.rstrip(".")]
    return []


def import_graph(sources=SOURCES, packages: tuple[str, ...] = PROJECT) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (module level, functions, TYPE_CHECKING,
    importlib calls).

    `from pkg import name` counts as importing pkg.name when that is a module, else pkg itself. A package's __init__
    is not counted as imported by its submodules (Python runs it first, but it is not an edge they choose).
    """
    if isinstance(sources, Path):  # one folder holding the facerealism package
        sources = ((sources, "facerealism"),)
    modules = module_files(sources)
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
            elif isinstance(node, ast.Call):
                targets = _importlib_targets(node, modules)
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a name inside a module: its module
                    target = target.rpartition(".")[0]
                if target and target.split(".")[0] in packages and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from one package to another that does not point to a lower layer, as 'module -> module'."""
    return sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                  if package_of(m) != package_of(d) and layer(d) <= layer(m) and (m, d) not in KNOWN_UPWARD)


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


def test_src_and_flows_have_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_package_has_one_layer():
    graph = import_graph()
    packages = {package_of(m) for m in graph}
    named = [p for row in LAYERS for p in row]
    assert len(named) == len(set(named)), "a package named in two layers"
    assert sorted(packages - set(named)) == [], "packages no layer names: place them in LAYERS"
    assert sorted(set(named) - packages) == [], "LAYERS names packages the tree no longer has"


@pytest.mark.parametrize("module, expected", [("facerealism.cli", 0), ("flows.pipeline", 2),
                                              ("facerealism.orchestration.dag", 4), ("facerealism.stages.train", 5),
                                              ("facerealism.scoring.gate", 8), ("facerealism.config.train", 11),
                                              ("facerealism.errors", 13), ("facerealism", 13)])
def test_layers(module, expected):
    assert layer(module) == expected


def test_imports_only_point_down():
    upward = upward_imports(import_graph())
    assert not upward, "imports beside or up the layer order (tests/test_imports.py: LAYERS):\n" + "\n".join(upward)


def test_known_upward_imports_still_exist():
    graph = import_graph()
    assert [edge for edge in KNOWN_UPWARD if edge[1] not in graph.get(edge[0], set())] == [], \
        "a tolerated upward import is gone: remove it from KNOWN_UPWARD"


def test_importlib_calls_are_edges():
    graph = import_graph()
    stages = {m for m in graph if m.startswith("facerealism.stages.")}
    assert stages and stages <= graph["facerealism.stages"]  # run_stage: import_module(f"facerealism.stages.{name}")


# The blind spots the earlier version of this test had, each planted in a scratch copy of the real tree.

@pytest.fixture
def scratch(tmp_path) -> tuple[tuple[Path, str], ...]:
    ignore = shutil.ignore_patterns("__pycache__")
    for root, package in SOURCES:
        shutil.copytree(root / package, tmp_path / package, ignore=ignore)
    return tuple((tmp_path, package) for _, package in SOURCES)


def plant(scratch, module_path: str, code: str) -> None:
    path = scratch[0][0] / module_path
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_the_scratch_copy_is_clean(scratch):
    graph = import_graph(scratch)
    assert find_cycle(graph) is None and upward_imports(graph) == []


def test_a_planted_cycle_through_flows_is_caught(scratch):
    plant(scratch, "facerealism/orchestration/dag.py", "def _planted():\n    from flows.pipeline import pipeline")
    graph = import_graph(scratch)
    cycle = find_cycle(graph)
    assert cycle is not None and {"facerealism.orchestration.dag", "flows.pipeline"} <= set(cycle)
    assert "facerealism.orchestration.dag -> flows.pipeline" in upward_imports(graph)


def test_a_planted_import_between_sibling_packages_is_caught(scratch):
    # config and scoring sit in different layers; scoring already reads config, so this makes them import each other
    plant(scratch, "facerealism/config/train.py", "def _planted():\n    from facerealism.scoring import gate")
    assert upward_imports(import_graph(scratch)) == ["facerealism.config.train -> facerealism.scoring.gate"]
    # two packages of one layer may not import each other either
    plant(scratch, "facerealism/metrics/frechet.py", "def _planted():\n    from facerealism.report import grids")
    assert "facerealism.metrics.frechet -> facerealism.report.grids" in upward_imports(import_graph(scratch))


@pytest.mark.parametrize("code, edge", [
    ("import importlib\nimportlib.import_module('facerealism.cli')", "facerealism.stages -> facerealism.cli"),
    ("from importlib import import_module\ndef _planted(name):\n    return import_module(f'flows.{name}')",
     "facerealism.stages -> flows.pipeline"),
])
def test_a_planted_importlib_import_is_caught(scratch, code, edge):
    plant(scratch, "facerealism/stages/__init__.py", code)
    assert edge in upward_imports(import_graph(scratch))


def test_an_unplaced_package_is_caught(scratch):
    (scratch[0][0] / "facerealism" / "newpkg").mkdir()
    (scratch[0][0] / "facerealism" / "newpkg" / "__init__.py").write_text('"""A package no layer names."""\n')
    plant(scratch, "facerealism/newpkg/__init__.py", "from facerealism import errors")
    with pytest.raises(KeyError):
        upward_imports(import_graph(scratch))


def test_every_package_states_its_concern_in_its_first_line():
    for init in sorted((SRC / "facerealism").rglob("__init__.py")):
        if init.parent.name == "facerealism":
            continue
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.splitlines()[0].strip(), f"{init.relative_to(SRC)} has no one-line docstring"


# What the package root may hold: what a user runs (cli, enhance, sweep, trials), what a registered model imports when it
# loads (head, files, errors: see mlops/pyfunc.py), the environment switch every entry point reads first, and the
# machine's precision (training, benchmarks and the GPU kit pick bf16 only where it is native), and the progress lines
# every long loop reports through (stages, scoring's Table 4, quality, speed: below them all), and the Dask cluster
# sharded work runs on (orchestration's generate flow and the evaluate stage beneath it share one address and setup).
ROOT_MODULES = {"__init__", "cli", "enhance", "sweep", "trials", "head", "files", "errors", "env", "precision",
                "progress", "cluster"}


def test_the_package_root_holds_only_entry_points_and_what_models_import():
    found = {p.stem for p in (SRC / "facerealism").glob("*.py")}
    assert found <= ROOT_MODULES, sorted(found - ROOT_MODULES)


def load_time_imports(name: str, modules: dict) -> list[tuple[str, str | None]]:
    """(source, name) of every import a module runs when it loads: its body, and inside if/try blocks there; not in
    functions. `import a.b` is (a.b, None); `from a import b` is (a, b)."""
    path, is_pkg = modules[name]
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out: list[tuple[str, str | None]] = []
    for top in ast.parse(path.read_text(), str(path)).body:
        for node in ast.walk(top) if isinstance(top, (ast.If, ast.Try)) else (top,):
            if isinstance(node, ast.Import):
                out += [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = (".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                          if node.level else node.module or "")
                out += [(source, a.name) for a in node.names]
    return out


def waits_on_a_loading_package(sources=SOURCES) -> list[str]:
    """Modules that a package's __init__ loads (directly or through others) and that themselves run
    `from <that package> import ...` or `import <that package>` when they load.

    Such an import waits on the package's import lock. Two threads importing lazily (the pipeline's concurrent stages)
    then wait on each other: one inside the package's __init__, one inside the module. Python breaks that deadlock by
    handing one of them a partially initialised module, and the import fails in one run out of many.
    """
    if isinstance(sources, Path):
        sources = ((sources, "facerealism"),)
    modules = module_files(sources)
    found = []
    for package, (_, is_pkg) in modules.items():
        if not is_pkg:
            continue
        seen, todo = set(), [package]
        while todo:
            for source, name in load_time_imports(todo.pop(), modules):
                target = next((t for t in (f"{source}.{name}" if name else "", source) if t in modules), None)
                if target and target != package and target not in seen:
                    seen.add(target)
                    todo.append(target)
        found += [f"{m}: {'from ' + s + ' import ' + n if n else 'import ' + s}" for m in sorted(seen)
                  for s, n in load_time_imports(m, modules) if s == package]
    return found


def test_a_module_its_package_loads_never_waits_on_that_package():
    assert waits_on_a_loading_package() == [], (
        "import these siblings by their full name (`import pkg.mod as mod`): under concurrent stages the form below "
        "fails now and then with 'partially initialized module'")


def test_a_planted_wait_on_a_loading_package_is_caught(tmp_path):
    root = write(tmp_path, {
        "facerealism/__init__.py": "",
        "facerealism/pkg/__init__.py": "from facerealism.pkg.a import f\n",
        "facerealism/pkg/a.py": "from facerealism.other import g\ndef f():\n    from facerealism.pkg import b\n",
        "facerealism/other.py": "try:\n    from facerealism.pkg import b\nexcept ImportError:\n    pass\ng = 1\n",
        "facerealism/pkg/b.py": "import facerealism.pkg.a as a\n",
    })
    # other.py loads while pkg/__init__ runs and waits on pkg; a's function-level import and b's full name do not.
    assert waits_on_a_loading_package(root) == ["facerealism.other: from facerealism.pkg import b"]
