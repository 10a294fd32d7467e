"""Keep Prefect, MLflow and DVC state inside the project and their telemetry off — before they are imported."""

from __future__ import annotations

import os
from pathlib import Path


def configure(project: str | Path = ".") -> None:
    project = Path(project).resolve()
    os.environ.setdefault("PREFECT_HOME", str(project / ".prefect"))
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    # The ephemeral Prefect server can take >20 s to start on a loaded 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # MLflow narrates database migrations on stderr; keep stderr for what the user must act on.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
