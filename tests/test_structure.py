"""The code's own bookkeeping agrees: one list of architectures."""

from typing import get_args

from facerealism.config import TrainConfig
from facerealism.config.architectures import ARCHITECTURES, CYCLE_MODELS, NAMES


def test_every_architecture_name_has_a_generator_a_trainer_and_is_a_config_choice():
    from facerealism.models import GENERATORS
    from facerealism.trainers import TRAINERS, CycleGAN

    assert set(GENERATORS) == set(NAMES)
    assert {a.trainer for a in ARCHITECTURES.values()} <= set(TRAINERS)
    assert set(get_args(TrainConfig.model_fields["model"].annotation)) == set(NAMES)
    assert set(CYCLE_MODELS) == {n for n, a in ARCHITECTURES.items() if TRAINERS[a.trainer] is CycleGAN}


# ---------------------------------------------------------------------------------------------------------------
# The one-hop rule: dvc.yaml, STAGE_NAMES, stages/*.py, params.yaml sections and the catalog name the same things
# ---------------------------------------------------------------------------------------------------------------

import ast
from pathlib import Path

import yaml

from facerealism.config import STAGE_NAMES, Config
from facerealism.data import catalog

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
ROOTS = {name: PARAMS["paths"][name] for name in ("data", "models", "reports")}  # dvc.yaml paths start with these


def entries(stage: dict, *kinds: str) -> list[str]:
    """The paths of a dvc.yaml stage's entries of these kinds (plain strings or {path: options})."""
    return [e if isinstance(e, str) else next(iter(e)) for k in kinds for e in stage.get(k, [])]


def dvc_path(a: catalog.Artifact) -> str:
    return f"{ROOTS[a.root]}/{a.name}"


def writers(stage: str) -> list[Path]:
    """The stage's own module and the src/ files it lists as deps (folders: every .py inside)."""
    files = []
    for dep in entries(DVC[stage], "deps"):
        path = ROOT / dep
        if dep.startswith("src/"):
            files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def catalog_names_used(files: list[Path]) -> set[str]:
    """Catalog constants a set of modules reads (catalog.NAME)."""
    used = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "catalog":
                used.add(node.attr)
    return used


def test_every_stage_has_one_name_its_module_its_command_and_its_section():
    modules = {p.stem for p in (ROOT / "src/facerealism/stages").glob("*.py")} - {"__init__"}
    assert list(DVC) == list(STAGE_NAMES) and set(STAGE_NAMES) == modules
    sections = set(Config.model_fields) | {f.alias for f in Config.model_fields.values() if f.alias}
    for name, stage in DVC.items():
        assert stage["cmd"] == f"facerealism stage {name}", name
        assert entries(stage, "deps")[0] == f"src/facerealism/stages/{name}.py", name  # its own file first
        missing = [d for d in entries(stage, "deps") if not (ROOT / d).exists() and not d.startswith(tuple(ROOTS.values()))]
        assert not missing, (name, missing)
        for param in stage.get("params", []):
            node = PARAMS
            for key in param.split("."):  # every listed param exists in params.yaml
                assert isinstance(node, dict) and key in node, (name, param)
                node = node[key]
            assert param.split(".")[0] in sections, (name, param)
        if name in PARAMS:  # one stage = one params.yaml section, which it reads
            assert any(p == name or p.startswith(f"{name}.") for p in stage.get("params", [])), name


def test_every_artifact_dvc_names_is_in_the_catalog_produced_once_and_before_it_is_read():
    by_path = {dvc_path(a): k for k, a in catalog.ARTIFACTS.items()}
    produced: dict[str, str] = {}
    for name in STAGE_NAMES:
        stage = DVC[name]
        for dep in entries(stage, "deps"):
            if not dep.startswith("src/"):
                assert dep in by_path, f"{name} reads {dep}, which the catalog does not name"
                assert dep in produced, f"{name} reads {dep} before any stage writes it"
        for out in entries(stage, "outs", "metrics", "plots"):
            assert out in by_path, f"{name} writes {out}, which the catalog does not name"
            assert out not in produced, f"{out} is written by both {produced[out]} and {name}"
            produced[out] = name
    tracked = {dvc_path(a) for a in catalog.ARTIFACTS.values() if a not in catalog.UNTRACKED}
    assert tracked == set(produced), tracked ^ set(produced)  # a catalog entry dvc does not know is dead or untracked


def test_each_stage_writes_its_outputs_from_code_it_lists_one_hop_away():
    by_path = {dvc_path(a): k for k, a in catalog.ARTIFACTS.items()}
    for name in STAGE_NAMES:
        used = catalog_names_used(writers(name))
        for out in entries(DVC[name], "outs", "metrics", "plots"):
            assert by_path[out] in used, f"{name} declares {out}, but neither stages/{name}.py nor its src deps name it"


def test_stage_modules_name_artifacts_only_through_the_catalog():
    names = {a.name for a in catalog.ARTIFACTS.values() if "." in a.name}
    for path in (ROOT / "src/facerealism/stages").glob("*.py"):
        literals = {n.value for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not literals & names, (path.name, literals & names)


def config_reads(files: list[Path]) -> set[str]:
    """`cfg.section` / `cfg.section.key` attribute chains the modules read (methods like cfg.dump excluded)."""
    sections = {f.alias or n: n for n, f in Config.model_fields.items()}
    reads = set()
    for f in files:
        tree = ast.parse(f.read_text())
        inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}  # read as part of a longer chain
        for node in ast.walk(tree):
            if id(node) in inner:
                continue
            chain = []
            while isinstance(node, ast.Attribute):
                chain.insert(0, node.attr)
                node = node.value
            if isinstance(node, ast.Name) and node.id == "cfg" and chain:
                section = next((alias for alias, n in sections.items() if n == chain[0]), None)
                if section is not None:
                    reads.add(".".join([section, *chain[1:2]]))
    return reads


# Reads the scan finds in a dep that the stage never reaches (the scan sees modules, not call paths).
UNREACHED = {("benchmark", "generate.size"): "FluxBackend's; benchmark only calls backends.flux.load_pipeline",
             ("register", "evaluate.bootstrap"): "table4.metric_names' (preflight's); register reads flat_metrics",
             ("register", "evaluate.spaces"): "table4.metric_names' (preflight's); register reads flat_metrics",
             # Table 4's reference rows are named after the models that rendered the pairs (table4.references): a
             # change there re-renders data/pairs, which evaluate depends on, so listing them would add nothing
             ("evaluate", "generate.backend"): "table4.references: reaches evaluate through data/pairs",
             ("evaluate", "generate.diffusers"): "table4.references: reaches evaluate through data/pairs",
             ("register", "generate.backend"): "table4.references (evaluate's); register reads table4.json's rows",
             ("register", "generate.diffusers"): "table4.references (evaluate's); register reads table4.json's rows"}


def test_each_stage_lists_exactly_the_params_it_reads():
    for name in STAGE_NAMES:
        listed = DVC[name].get("params", [])
        reads = {r for r in config_reads(writers(name)) if not r.startswith("paths") and (name, r) not in UNREACHED}
        covered = lambda r: any(r == p or r.startswith(f"{p}.") for p in listed)  # noqa: E731
        assert all(covered(r) for r in reads), (name, sorted(r for r in reads if not covered(r)))
        # and nothing more: a listed param nobody reads reruns the stage for nothing (seed is read via helpers); a
        # section of another stage is listed whole only when every key of it is read
        def needed(p: str) -> bool:
            if p == name or p == "seed":
                return True
            if any(r == p or p.startswith(f"{r}.") for r in reads):
                return True
            keys = PARAMS[p] if "." not in p else None
            return isinstance(keys, dict) and all(f"{p}.{k}" in reads for k in keys)

        unneeded = [p for p in listed if not needed(p)]
        assert not unneeded, (name, unneeded)


def test_every_package_under_src_is_installed_by_a_non_editable_install():
    import tomllib

    from setuptools import find_packages

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    find = setup["packages"]["find"]
    listed = {p for where in find["where"] for p in find_packages(str(ROOT / where), include=find["include"])}
    found = {".".join(p.parent.relative_to(ROOT / "src").parts) for p in (ROOT / "src").rglob("__init__.py")}
    assert found <= listed, f"not installed by pyproject.toml's packages.find: {sorted(found - listed)}"
    assert "flows" in listed and not any(p.startswith(("tests", "src")) for p in listed)
    # The data files next to the code (architecture configs, preset params, templates) are package data too.
    data = [pattern for pattern in setup["package-data"]["facerealism"]]
    package = ROOT / "src" / "facerealism"
    files = [p for p in package.rglob("*") if p.suffix in (".json", ".yaml", ".md", ".html")]
    assert files and all(any(p.relative_to(package).match(g) for g in data) for p in files), \
        [str(p) for p in files if not any(p.relative_to(package).match(g) for g in data)]


def test_every_params_section_has_one_config_class_in_a_file_named_for_it():
    """One hop from a params.yaml section to its class: config/<section>.py holds it (and only section classes)."""
    import importlib

    for name, field in Config.model_fields.items():
        section = field.alias or name
        if section == "seed":
            continue
        assert section in PARAMS, section
        assert field.annotation.__module__ == f"facerealism.config.{section}", (section, field.annotation.__module__)
        module = importlib.import_module(f"facerealism.config.{section}")
        sections = {n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module.__name__}
        assert field.annotation.__name__ in sections, section


def test_the_split_section_is_listed_by_exactly_the_stages_that_read_it():
    """split has no stage of its own: it is the held-out split, and each stage that reads it lists it in dvc.yaml."""
    readers = {name for name in STAGE_NAMES if any(r.split(".")[0] == "split" for r in config_reads(writers(name)))}
    listed = {name for name in STAGE_NAMES if any(p.split(".")[0] == "split" for p in DVC[name].get("params", []))}
    assert "split" not in STAGE_NAMES and "train" in readers
    assert readers == listed, (sorted(readers), sorted(listed))


def test_every_mutation_applies_and_names_tests_that_exist():
    """`make mutate` stops on a snippet that moved (exit 2): this catches the drift when the code moves, not when
    someone next runs the mutations."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("mutate", ROOT / ".ci/mutate.py")
    mutate = importlib.util.module_from_spec(spec)
    sys.modules["mutate"] = mutate  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(mutate)
    finally:
        del sys.modules["mutate"]
    assert mutate.check_snippets(mutate.MUTATIONS) == []
    missing = []
    for m in mutate.MUTATIONS:
        for test in m.tests:
            path, _, name = test.partition("::")
            if not (ROOT / path).exists() or (name and f"def {name.split('[')[0]}(" not in (ROOT / path).read_text()):
                missing.append(f"{m.name}: {test}")
    assert not missing, missing
