"""MLflow in one place: the tracking store, the experiment, and the only calls stages make to log."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from facerealism.config import Config, flatten


def _uri(cfg: Config) -> str:
    uri = cfg.paths.mlflow_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # Relative SQLite paths are resolved against the project, not the caller's cwd of the day.
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def setup(cfg: Config):
    """Point MLflow at the configured store and experiment; returns the mlflow module."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(_uri(cfg))
    mlflow.set_registry_uri(_uri(cfg))
    if mlflow.get_experiment_by_name(cfg.paths.experiment) is None:
        artifacts = None
        if _uri(cfg).startswith("sqlite:"):
            artifacts = Path(cfg.paths.mlflow_artifacts).resolve().as_uri()
        mlflow.create_experiment(cfg.paths.experiment, artifact_location=artifacts)
    mlflow.set_experiment(cfg.paths.experiment)
    return mlflow


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def run(cfg: Config, stage: str, run_id: str | None = None):
    """Start (or resume, by id) the MLflow run a stage logs into."""
    mlflow = setup(cfg)
    if run_id:
        ctx = mlflow.start_run(run_id=run_id)
    else:
        from facerealism.mlops.lineage import dataset_tags

        # git commit + the DVC hash of the data on disk: a registered version leads back to code and data.
        tags = {"facerealism.stage": stage, "git_commit": git_commit(), **dataset_tags(cfg.paths.data)}
        ctx = mlflow.start_run(run_name=stage, tags=tags)
    with ctx as active:
        yield active


def log_config(cfg: Config) -> None:
    """The resolved config, in one call: flattened params plus the whole document as an artifact."""
    import mlflow

    flat = flatten(cfg.dump())
    mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})
    mlflow.log_dict(cfg.dump(), "config.json")


def log_params(params: dict) -> None:
    import mlflow

    mlflow.log_params(params)


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    mlflow.set_tags(tags)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None}, step=step)


def log_image(image, key: str, step: int) -> None:
    """An image series (MLflow shows a step slider under `key`), e.g. sample grids during training."""
    import mlflow

    mlflow.log_image(image, key=key, step=step)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path)


def log_reports(cfg: Config, stage: str, metrics: dict, paths: list[str | Path]) -> None:
    """A short run per data stage (validate, audit): its numbers and report files beside the training runs."""
    numeric = {f"{stage}.{k}": v for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")}
    with run(cfg, stage):
        log_metrics(numeric)
        for path in paths:
            if Path(path).exists():
                log_artifact(path)
