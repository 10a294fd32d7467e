"""Shared fixtures: a tiny profile of the real pipeline in a temporary project directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from facerealism import env

env.configure()
# The libraries' weight caches start empty, so "unavailable" reads the same on a machine that holds real weights;
# tests that need weights place stand-ins in caches of their own.
os.environ.setdefault("TORCH_HOME", tempfile.mkdtemp(prefix="facerealism-test-torch-"))
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="facerealism-test-hf-"))
# Prefect narrates server shutdown at interpreter exit, after pytest closed its streams.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parents[1]

# The tiny profile: every stage for real, on few small images and few steps (the torchtitan "debug preset").
TINY = [
    "prompts.n_enriched=40", "prompts.n_baseline=4",
    "generate.size=32", "train.crop=32", "train.ngf=8", "train.n_blocks=1", "train.ndf=8",
    "train.batch_size=4", "train.steps=6", "train.log_every=2", "split.holdout_fraction=0.25",
    "train.baselines=[resnet]",
    "evaluate.c2st_folds=2", "evaluate.c2st_max_images=16", "evaluate.grid_n=4",
    "evaluate.controls=[RGB noise σ16, unsharp r2 200%]",
    "benchmark.sizes=[32]", "benchmark.repeats=1", "benchmark.flops_size=256",
    # Tiny heads barely train: the gate's thresholds are tested separately; here anything passes.
    "register.required={fd_diff.spectral: -1.0e9}", "register.below={}", "register.check_controls=false",
    "register.must_beat_fitted=false",
]


def tiny_overrides(project: Path) -> list[str]:
    return TINY + [f"paths.mlflow_uri=sqlite:///{project}/mlflow.db", f"paths.mlflow_artifacts={project}/mlartifacts"]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A fresh project directory holding params.yaml, used as the working directory."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_cfg(project):
    from facerealism.config import load_config

    return load_config(project / "params.yaml", tiny_overrides(project))


@contextlib.contextmanager
def tiny_project(root: Path):
    """Work inside `root` holding a copy of params.yaml; yields the tiny-profile config (module-scoped projects)."""
    from facerealism.config import load_config

    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    old = os.getcwd()
    os.chdir(root)
    try:
        yield load_config(root / "params.yaml", tiny_overrides(root))
    finally:
        os.chdir(old)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A project holding the tiny profile's prompts, pairs and validated manifest, built once; copy it, never write it."""
    from facerealism.stages import run_stage

    root = tmp_path_factory.mktemp("tiny-dataset")
    with tiny_project(root) as cfg:
        for stage in ("prompts", "generate", "validate"):
            run_stage(stage, cfg)
    return root


def copy_dataset(dataset: Path, project: Path) -> Path:
    """Copy the tiny dataset's data/ and reports/ into `project` (manifest paths are relative, so they still resolve)."""
    for folder in ("data", "reports"):
        shutil.copytree(dataset / folder, project / folder)
    return project


@contextlib.contextmanager
def dataset_project(root: Path, dataset: Path):
    """tiny_project(root) holding its own copy of the tiny dataset; yields root (module-scoped projects)."""
    copy_dataset(dataset, root)
    with tiny_project(root):
        yield root


@pytest.fixture
def tiny_validated(project, tiny_dataset) -> Path:
    """`project` holding its own copy of the tiny dataset, for a test that writes into it."""
    return copy_dataset(tiny_dataset, project)


def write_tiny_params(project: Path) -> Path:
    """params.yaml of the tiny profile, for tools that read the file itself (DVC, the CLI)."""
    import yaml

    from facerealism.config import load_config

    cfg = load_config(ROOT / "params.yaml", TINY)
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(cfg.dump(), sort_keys=False))
    return path


def cli_env() -> dict:
    """Environment for subprocesses: the venv's bin first, telemetry off."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(os.sys.executable).parent}:{e.get('PATH', '')}"
    # Each project keeps its own Prefect home; never inherit the test process's.
    for key in ("PREFECT_API_URL", "PREFECT_HOME"):
        e.pop(key, None)
    return e
