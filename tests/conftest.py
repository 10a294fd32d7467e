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
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # One pytest-xdist worker per core: each keeps to one thread (before torch is imported), as do its subprocesses.
    for _key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_key, "1")
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
    "benchmark.pipeline_sizes=[32]", "benchmark.pipeline_repeats=1",
    # Fig. 8's tiny FLUX pipelines cost ~6 s of every whole-flow benchmark run here; test_benchmark.py times them.
    "benchmark.pipelines=skip",
    # Tiny heads barely train: the gate's thresholds are tested separately; here anything passes.
    "register.required={fd_diff.spectral: -1.0e9}", "register.below={}", "register.check_controls=false",
    "register.must_beat_fitted=false", "register.promote_fitted=false",
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


_SHARED_PREFECT: list = []  # the session's one Prefect server for subprocess flows, started on first use


def shared_prefect_api() -> str:
    """API URL of one Prefect server (SQLite) shared by every subprocess flow of this test session.

    A flow without a configured server would start Prefect's temporary one (~10 s each) or, through
    `facerealism run`, the project's own background server (left running): one server for the session costs one start.
    """
    if not _SHARED_PREFECT:
        from facerealism.bench import servers

        _SHARED_PREFECT.append(servers.start_prefect_server(tempfile.mkdtemp(prefix="facerealism-test-prefect-"),
                                                            postgres=False))
    return _SHARED_PREFECT[0].api_url


def pytest_sessionfinish(session, exitstatus):
    from facerealism.bench import servers

    while _SHARED_PREFECT:
        servers.stop_prefect_server(_SHARED_PREFECT.pop())


def cli_env() -> dict:
    """Environment for subprocesses: the venv's bin first, telemetry off, the session's shared Prefect server."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(os.sys.executable).parent}:{e.get('PATH', '')}"
    # Each project keeps its own Prefect home; never inherit the test process's.
    e.pop("PREFECT_HOME", None)
    e["PREFECT_API_URL"] = shared_prefect_api()
    return e


def pytest_collection_modifyitems(session, config, items):
    """Files that hold slow tests first, so that pytest-xdist starts the long ones early (a stable sort: within a
    file the written order stays)."""
    has_slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in has_slow)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Where the suite's time goes: summed test time (setup + call + teardown) per layer (`slow` marker or not)."""
    layers: dict[str, list[float]] = {"fast": [], "slow": []}
    for reports in terminalreporter.stats.values():
        for r in reports:
            if getattr(r, "when", None) in ("setup", "call", "teardown") and hasattr(r, "duration"):
                layers["slow" if "slow" in r.keywords else "fast"].append(r.duration)
    if any(layers.values()):
        parts = [f"{name} {sum(d):.0f} s" for name, d in layers.items() if d]
        terminalreporter.write_line(f"summed test time by layer: {', '.join(parts)} "
                                    f"(wall time: the closing line; workers: {config.getoption('numprocesses', None) or 1})")
