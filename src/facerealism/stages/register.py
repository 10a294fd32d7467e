"""Stage `register`: log the head as an MLflow pyfunc, register it, and let the gate decide on `champion`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from facerealism import tracking
from facerealism.config import Config
from facerealism.files import read_json, write_json


def gate(cfg: Config, candidate: dict, champion: dict | None) -> tuple[bool, list[str]]:
    """The promotion policy; returns (passed, reasons). Every reason is a sentence a reviewer can check.

    Args:
        candidate: the candidate's flat metrics (reports/metrics.json).
        champion: the current champion's metrics, or None when there is none.
    """
    r = cfg.register
    reasons, passed = [], True
    for key, bound in r.required.items():
        value = candidate.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            passed = False
            reasons.append(f"{key} is missing or not a number: fail")
        elif value <= bound:
            passed = False
            reasons.append(f"{key} = {value:.4g} is not > {bound:g}: fail")
        else:
            reasons.append(f"{key} = {value:.4g} > {bound:g}: ok")
    if champion is None:
        reasons.append("no current champion")
    else:
        key, margin = r.champion_metric, r.margin_over_champion
        ours, theirs = candidate.get(key), champion.get(key)
        if theirs is None:
            reasons.append(f"champion has no {key}; not compared")
        elif ours is None or ours <= theirs + margin:
            passed = False
            reasons.append(f"{key} = {ours} does not beat champion's {theirs:.4g} + margin {margin:g}: fail")
        else:
            reasons.append(f"{key} = {ours:.4g} beats champion's {theirs:.4g} + margin {margin:g}: ok")
    return passed, reasons


def champion_metrics(client, name: str) -> tuple[str | None, dict | None]:
    """(version, metrics) of the current champion, from the tags the gate wrote when it was registered."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None, None
    metrics = {k[len("metric."):]: float(v) for k, v in mv.tags.items() if k.startswith("metric.")}
    return str(mv.version), metrics


def log_pyfunc(cfg: Config, head_dir: Path, run_id: str) -> str:
    """Log the head into its training run; returns the model URI."""
    import mlflow
    from mlflow.models import infer_signature

    from facerealism import pyfunc_model

    example = pd.DataFrame({"image": [pyfunc_model.encode_image(np.zeros((64, 64, 3), np.uint8))]})
    signature = infer_signature(example, example)
    with tracking.run(cfg, "register", run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="head",
            python_model=str(Path(pyfunc_model.__file__)),
            artifacts={"head": str(head_dir)},
            signature=signature,
            input_example=example,
            pip_requirements=["facerealism", "torch", "safetensors", "pillow", "pandas", "mlflow"],
        )
    return info.model_uri


def run(cfg: Config) -> dict:
    head_dir = Path(cfg.paths.models) / "head"
    meta = read_json(head_dir / "head.json")
    candidate = read_json(Path(cfg.paths.reports) / "metrics.json")
    mlflow = tracking.setup(cfg)
    client = mlflow.MlflowClient()
    name = cfg.register.model_name
    model_uri = log_pyfunc(cfg, head_dir, meta["mlflow_run_id"])
    mv = mlflow.register_model(model_uri, name)
    version = str(mv.version)
    champ_version, champ = champion_metrics(client, name)
    passed, reasons = gate(cfg, candidate, champ)
    numeric = {k: v for k, v in candidate.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k, v in numeric.items():
        client.set_model_version_tag(name, version, f"metric.{k}", str(v))
    client.set_model_version_tag(name, version, "gate.passed", str(passed))
    client.set_model_version_tag(name, version, "gate.reasons", " | ".join(reasons))
    client.set_registered_model_alias(name, "challenger", version)
    if passed:
        client.set_registered_model_alias(name, "champion", version)
    decision = {"model": name, "version": version, "promoted": passed, "reasons": reasons,
                "previous_champion": champ_version, "champion": version if passed else champ_version,
                "model_uri": f"models:/{name}/{version}"}
    write_json(Path(cfg.paths.reports) / "promotion.json", decision)
    return {"version": version, "promoted": passed, "champion": decision["champion"]}
