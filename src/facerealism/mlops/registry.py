"""The MLflow model registry: log a head as a pyfunc, find a candidate's version, move `champion` under a lock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from facerealism.config import Config
from facerealism.errors import UserError
from facerealism.files import sha256_file
from facerealism.mlops import tracking
from facerealism.scoring.gate import beats_fitted, gate

LOCK_TAG = "promotion.lock"
SPLIT_TAG = "holdout.fingerprint"
DECIDED_TAG = "gate.decided_at"
APPROVAL_TAG = "approval.status"  # pending | approved | rejected, with register.human_approval
AWAITING = "awaiting approval"  # gate.passed of a version that passed the gate and waits for a person
CANDIDATE_TAG = "candidate.key"  # head files + metrics + split: one registered version per candidate


def log_pyfunc(cfg: Config, head_dir: Path, meta: dict, card: str, provenance: dict) -> str:
    """Log the head (plus its card and the config it was trained with) into its training run; returns the model URI."""
    import mlflow
    from mlflow.models import infer_signature

    from facerealism.mlops import pyfunc

    example = pd.DataFrame({"image": [pyfunc.encode_image(np.zeros((32, 32, 3), np.uint8))]})
    signature = infer_signature(example, example)
    with tempfile.TemporaryDirectory() as tmp, tracking.run(cfg, "register", run_id=meta.get("mlflow_run_id")):
        (Path(tmp) / "README.md").write_text(card)
        (Path(tmp) / "config.json").write_text(json.dumps(meta["config"], indent=2))
        info = mlflow.pyfunc.log_model(
            name="head",
            python_model=str(Path(pyfunc.__file__)),
            artifacts={"head": str(head_dir), "model_card": str(Path(tmp) / "README.md"),
                       "config": str(Path(tmp) / "config.json")},
            signature=signature,
            input_example=example,
            metadata=provenance,
            pip_requirements=["facerealism", "torch", "safetensors", "pillow", "pandas", "mlflow"],
        )
        mlflow.log_text(card, "model_card.md")
    return info.model_uri


def log_fitted_pyfunc(cfg: Config, name: str, params: dict, card: str, provenance: dict) -> str:
    """Log a fitted filter (its fitted numbers as JSON, plus its card) in a run of its own; returns the model URI."""
    import mlflow
    from mlflow.models import infer_signature

    from facerealism.mlops import fitted_pyfunc
    from facerealism.mlops.codec import encode_image

    example = pd.DataFrame({"image": [encode_image(np.zeros((32, 32, 3), np.uint8))]})
    with tempfile.TemporaryDirectory() as tmp, tracking.run(cfg, "register: fitted filter"):
        (Path(tmp) / "README.md").write_text(card)
        (Path(tmp) / "filter.json").write_text(json.dumps({"name": name, "params": params}, indent=1))
        info = mlflow.pyfunc.log_model(
            name="fitted_filter",
            python_model=str(Path(fitted_pyfunc.__file__)),
            artifacts={"filter": str(Path(tmp) / "filter.json"), "model_card": str(Path(tmp) / "README.md")},
            signature=infer_signature(example, example),
            input_example=example,
            metadata={**provenance, "kind": "fitted filter", "fitted_filter": name},
            pip_requirements=["facerealism", "numpy", "scipy", "pillow", "pandas", "mlflow"],
        )
        mlflow.set_tags({"facerealism.kind": "fitted filter", "facerealism.fitted_filter": name})
        mlflow.log_text(card, "model_card.md")
    return info.model_uri


def version_state(mv) -> tuple[dict, str | None]:
    """(metrics, held-out fingerprint) a registered version was tagged with."""
    metrics = {k[len("metric."):]: float(v) for k, v in mv.tags.items() if k.startswith("metric.")}
    return metrics, mv.tags.get(SPLIT_TAG)


def champion_state(client, name: str):
    """The current champion's ModelVersion, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, "champion")
    except MlflowException as e:
        # Only "there is no such alias/model" means no champion; a server error must not let the gate promote
        # without comparing.
        if e.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(e).lower():
            return None
        raise


def champion_metrics(client, name: str) -> tuple[str | None, dict | None]:
    """(version, metrics) of the current champion, from the tags the gate wrote when it was registered."""
    mv = champion_state(client, name)
    return (None, None) if mv is None else (str(mv.version), version_state(mv)[0])


@contextlib.contextmanager
def promotion_lock(client, cfg: Config, name: str, timeout: float = 120.0):
    """Serialise read-champion -> gate -> move-alias across processes.

    A SQLite store gets an OS file lock next to the database (exact). A server or database store has no
    compare-and-set, so a lease tag on the registered model is written and read back after a pause; two
    writers can rarely both read their own token, which is why `settle_champion` re-checks afterwards.
    """
    from mlflow.exceptions import MlflowException

    uri = tracking._uri(cfg)
    if uri.startswith("sqlite:///"):
        import fcntl

        lock_path = Path(uri[len("sqlite:///"):]).with_suffix(".promotion.lock")
        with open(lock_path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return
    token, deadline = uuid.uuid4().hex, time.monotonic() + timeout
    while True:
        holder = client.get_registered_model(name).tags.get(LOCK_TAG, "")
        owner, _, expires = holder.partition(" ")
        if not owner or float(expires or 0) < time.time():
            try:
                client.set_registered_model_tag(name, LOCK_TAG, f"{token} {time.time() + timeout:.0f}")
            except MlflowException:
                # Two first-time writers race on the tag's insert and the store rejects one
                # (PostgreSQL: unique violation): that writer lost; retry after the back-off.
                pass
            else:
                time.sleep(0.5)  # let a competing writer's tag land before reading back
                if client.get_registered_model(name).tags.get(LOCK_TAG, "").startswith(token):
                    break
        if time.monotonic() > deadline:
            raise TimeoutError(f"registered model {name!r}: promotion lock held by {owner} for over {timeout:.0f}s; "
                               f"delete its tag {LOCK_TAG!r} if that process died")
        time.sleep(random.uniform(0.2, 0.8))
    try:
        yield
    finally:
        if client.get_registered_model(name).tags.get(LOCK_TAG, "").startswith(token):
            client.delete_registered_model_tag(name, LOCK_TAG)


def settle_champion(client, cfg: Config, name: str, rounds: int = 10) -> str | None:
    """Re-check after moving the alias: champion ends on the best version that passed the gate on its split.

    Covers a promotion that raced ours and set `champion` last with a worse model: whoever settles last
    sees every version tagged so far and moves the alias up. Returns the final champion version.
    To roll back for reasons the metrics miss, move the alias and tag the demoted version gate.passed=revoked,
    or the next promotion would move champion back to it.
    """
    key, margin = cfg.register.champion_metric, cfg.register.margin_over_champion
    for _ in range(rounds):
        cur = champion_state(client, name)
        if cur is None:
            return None
        cur_metrics, cur_split = version_state(cur)
        best, best_value = cur, cur_metrics.get(key, -math.inf)
        for mv in client.search_model_versions(f"name='{name}'"):
            metrics, split = version_state(mv)
            if mv.tags.get("gate.passed") == "True" and split == cur_split and metrics.get(key, -math.inf) > best_value:
                best, best_value = mv, metrics[key]
        if best is cur or best_value <= cur_metrics.get(key, -math.inf) + margin:
            return str(cur.version)
        client.set_registered_model_alias(name, "champion", best.version)
    return str(champion_state(client, name).version)


def promote(client, cfg: Config, version: str, candidate: dict, benchmark: dict | None, split: str,
            suite: tuple[bool, list[str]] = (True, []), fitted_filter: bool = False) -> dict:
    """Gate one registered version against the current champion and move the aliases; returns the decision.

    Args:
        suite: (sound, reasons) of `suite_check`; an unsound metric suite blocks promotion.
        fitted_filter: the version is a fitted filter (the best of the fitted baselines), not a learned head: it
            is not compared with the fitted baselines, itself among them.

    With register.human_approval a version that passes is held: gate.passed reads "awaiting approval" (so no
    settle step moves `champion` to it) until `approval.decide` records a person's answer.
    """
    name = cfg.register.model_name
    with promotion_lock(client, cfg, name):
        champ = champion_state(client, name)
        champ_metrics, champ_split = version_state(champ) if champ is not None else (None, None)
        split_changed = champ is not None and champ_split != split
        passed, reasons = gate(cfg, candidate, champ_metrics, benchmark, split_changed=split_changed)
        beats, why = (True, ["a fitted filter: not compared with the fitted baselines (it is the best of them that "
                             "passes the photo rules)"]) if fitted_filter else beats_fitted(cfg, candidate)
        passed, reasons = passed and beats and suite[0], reasons + why + suite[1]
        held = passed and cfg.register.human_approval
        client.set_model_version_tag(name, version, "gate.passed", AWAITING if held else str(passed))
        client.set_model_version_tag(name, version, "gate.reasons", " | ".join(reasons)[:4900])
        client.set_registered_model_alias(name, "challenger", version)
        if held:
            client.set_model_version_tag(name, version, APPROVAL_TAG, "pending")
        elif passed:
            client.set_registered_model_alias(name, "champion", version)
        # Written last: a version without it was cut off mid-decision, and a rerun decides it again.
        client.set_model_version_tag(name, version, DECIDED_TAG, time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        final = settle_champion(client, cfg, name)
    prev = None if champ is None else str(champ.version)
    return {"model": name, "version": version, "promoted": passed and not held, "reasons": reasons,
            "previous_champion": prev, "champion": final, "model_uri": f"models:/{name}/{version}",
            **({"approval": {"status": "pending", "reason": ""}} if held else {})}


def candidate_key(cfg: Config, head_dir: Path, candidate: dict, holdout: str, suite: list[str] | None = None) -> str:
    """Names one candidate: the head's files, its metrics, its held-out split, the gate's policy (register.*) and the
    metric suite's verdict (`suite_check`'s reasons: a suite that became sound decides afresh), not the code commit:
    the same candidate under the same gate is one registered version."""
    h = hashlib.sha256()
    for path in sorted(p for p in head_dir.rglob("*") if p.is_file()):
        h.update(path.relative_to(head_dir).as_posix().encode() + b"\0" + sha256_file(path).encode())
    h.update(json.dumps([candidate, holdout, cfg.register.model_dump(mode="json")] + ([suite] if suite else []),
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def registered_candidate(client, name: str, key: str):
    """The version already registered for this candidate key (a rerun or a retry), or None."""
    versions = [mv for mv in client.search_model_versions(f"name='{name}'") if mv.tags.get(CANDIDATE_TAG) == key]
    return min(versions, key=lambda mv: int(mv.version)) if versions else None


def rollback_champion(name: str, to_version: str, reason: str, tracking_uri: str | None = None) -> str:
    """Point `@champion` back at `to_version` and withdraw every newer version that passed the gate.

    The register stage re-settles `@champion` on the best gate-passing version, so moving the alias alone would
    be undone by the next nightly; the withdrawn versions get `gate.passed=False` and a `rollback.reason` tag.

    Returns:
        The version that was champion before the rollback ("" when there was none).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        target = client.get_model_version(name, str(to_version))
    except MlflowException as e:
        raise UserError(f"cannot roll back {name} to version {to_version}: {str(e).splitlines()[0]}") from None
    if target.tags.get("gate.passed") != "True":
        raise UserError(f"{name} version {to_version} never passed the gate (gate.passed={target.tags.get('gate.passed')!r});"
                         " roll back to a version that did")
    try:
        previous = str(client.get_model_version_by_alias(name, "champion").version)
    except MlflowException:
        previous = ""
    for mv in client.search_model_versions(f"name='{name}'"):
        if int(mv.version) > int(to_version) and mv.tags.get("gate.passed") == "True":
            client.set_model_version_tag(name, mv.version, "gate.passed", "False")
            client.set_model_version_tag(name, mv.version, "rollback.reason", reason)
    client.set_registered_model_alias(name, "champion", str(to_version))
    return previous
