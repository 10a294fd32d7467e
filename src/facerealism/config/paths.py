"""The `paths` section: where data, models and reports live."""

from __future__ import annotations

from facerealism.config.base import Section


class Paths(Section):
    data: str = "data"
    """Prompts, pairs and manifests (DVC-tracked outputs)."""
    reports: str = "reports"
    """JSON metrics, PNG grids and plots for people."""
    models: str = "models"
    """Trained head checkpoints."""
    mlflow_uri: str = "sqlite:///mlflow.db"
    """Tracking + registry store; the embedded default is a SQLite file inside the project."""
    mlflow_artifacts: str = "mlartifacts"
    """Artifact root for the embedded store (ignored when mlflow_uri is a server)."""
    experiment: str = "facerealism"
