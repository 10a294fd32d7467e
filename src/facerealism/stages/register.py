"""Stage `register`: log the head as an MLflow pyfunc with its model card, register it, let the gate decide `champion`."""

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
import yaml

from facerealism import catalog, tracking
from facerealism.config import Config
from facerealism.files import read_json, sha256_file, write_json

LOCK_TAG = "promotion.lock"
SPLIT_TAG = "holdout.fingerprint"
DECIDED_TAG = "gate.decided_at"
CANDIDATE_TAG = "candidate.key"  # head files + metrics + split: one registered version per candidate


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def throughput(cfg: Config, benchmark: dict) -> tuple[int, float | None]:
    """(image side, fp32 head images/s at that side) read from reports/benchmark.json; None when absent."""
    size = cfg.register.throughput_size or cfg.benchmark.sizes[0]
    value = benchmark.get("head_speed", {}).get(str(size), {}).get("fp32", {}).get("images_per_s")
    return size, value if _number(value) else None


def gate(cfg: Config, candidate: dict, champion: dict | None, benchmark: dict | None = None,
         split_changed: bool = False, photo: bool = True) -> tuple[bool, list[str]]:
    """The promotion policy; returns (passed, reasons). Every reason is a sentence a reviewer can check.

    Args:
        candidate: the candidate's flat metrics (reports/metrics.json).
        champion: the current champion's metrics, or None when there is none.
        benchmark: reports/benchmark.json; None skips the throughput floor (the stage always passes it).
        split_changed: the champion was scored on another held-out split, so its numbers are not comparable.
        photo: check the head's colour noise on a photograph (off for Table 4's reference and control rows,
            which are not heads).
    """
    r = cfg.register
    reasons, passed = [], True
    for key, bound in r.required.items():
        value = candidate.get(key)
        if not _number(value):
            passed = False
            reasons.append(f"{key} is missing or not a number: fail")
        elif value <= bound:
            passed = False
            reasons.append(f"{key} = {value:.4g} is not > {bound:g}: fail")
        else:
            reasons.append(f"{key} = {value:.4g} > {bound:g}: ok")
    for key, bound in r.below.items():  # a bound is a number or the name of another metric of the candidate
        value = candidate.get(key)
        limit = candidate.get(bound) if isinstance(bound, str) else bound
        shown = f"{bound} = {limit:.4g}" if isinstance(bound, str) and _number(limit) else f"{bound}"
        if not _number(value) or not _number(limit):
            passed = False
            reasons.append(f"{key if not _number(value) else bound} is missing or not a number: fail")
        elif value >= limit:
            passed = False
            reasons.append(f"{key} = {value:.4g} is not < {shown}: fail")
        else:
            reasons.append(f"{key} = {value:.4g} < {shown}: ok")
    if photo:
        gain, bound = candidate.get("photo.colour_noise_gain"), r.max_photo_colour_noise_gain
        if not _number(gain):
            passed = False
            reasons.append("photo.colour_noise_gain is missing or not a number: fail")
        elif gain > bound:
            passed = False
            reasons.append(f"photo.colour_noise_gain = {gain:.3g} > {bound:g}: the head adds colour noise to a photo: fail")
        else:
            reasons.append(f"photo.colour_noise_gain = {gain:.3g} <= {bound:g}: ok")
    if benchmark is None:
        reasons.append("throughput not checked (no benchmark given)")
    else:
        size, speed = throughput(cfg, benchmark)
        if speed is None:
            passed = False
            reasons.append(f"benchmark has no fp32 images/s at {size}px: fail")
        elif speed < r.min_images_per_s:
            passed = False
            reasons.append(f"throughput {speed:.3g} images/s at {size}px is below the floor {r.min_images_per_s:g}: fail")
        else:
            reasons.append(f"throughput {speed:.3g} images/s at {size}px >= {r.min_images_per_s:g}: ok")
    key, margin = r.champion_metric, r.margin_over_champion
    ours = candidate.get(key)
    if champion is None:
        reasons.append("no current champion")
    elif split_changed:
        if r.on_split_change == "fail":
            passed = False
            reasons.append("champion was scored on another held-out split and register.on_split_change=fail: fail")
        else:
            reasons.append("champion was scored on another held-out split; decided on absolute thresholds only")
    elif not _number(champion.get(key)):
        reasons.append(f"champion has no {key}; not compared")
    elif not _number(ours):
        passed = False
        reasons.append(f"{key} is missing, so it cannot beat the champion: fail")
    elif ours <= champion[key] + margin:
        passed = False
        reasons.append(f"{key} = {ours:.4g} does not beat champion's {champion[key]:.4g} + margin {margin:g}: fail")
    else:
        reasons.append(f"{key} = {ours:.4g} beats champion's {champion[key]:.4g} + margin {margin:g}: ok")
    return passed, reasons


def suite_check(cfg: Config, table_path: Path) -> tuple[bool, list[str], dict]:
    """Can the gate say no and yes? Every negative control of Table 4 must fail it and FLUX.1-dev must pass it.

    A control that passes means the metrics reward plain noise or sharpening, so no decision of this gate
    means anything: then nothing is promoted. Returns (sound, reasons, {row label: {"passed", "reasons"}}).

    Args:
        table_path: reports/table4.json (read only when register.check_controls is on).
    """
    from facerealism import controls
    from facerealism.stages.evaluate import DEV, flat_metrics

    if not cfg.register.check_controls:
        return True, ["controls not checked (register.check_controls=false)"], {}
    table = read_json(table_path)
    rows, sound, reasons = {}, True, []
    for label in [label for label in table["order"] if controls.is_control(label)] + [DEV]:
        passed, why = gate(cfg, flat_metrics(table, label), None, photo=False)
        rows[label] = {"passed": passed, "reasons": why}
    fooled = [label for label, r in rows.items() if label != DEV and r["passed"]]
    n_controls = len(rows) - 1
    if n_controls == 0:
        sound = False
        reasons.append("no negative control was scored (evaluate.controls is empty), so the gate is unchecked: fail")
    for label in fooled:
        sound = False
        reasons.append(f"the metric suite is fooled by {label}: it passes the gate: fail")
    if not rows[DEV]["passed"]:
        sound = False
        reasons.append(f"{DEV} itself fails the gate, so no head could pass it: fail")
    if sound:
        reasons.append(f"all {n_controls} negative controls fail the gate and {DEV} passes it: ok")
    return sound, reasons, rows


# --- provenance -------------------------------------------------------------------------------

def holdout_fingerprint(cfg: Config) -> str:
    """Hash of the sorted held-out ids: two models' metrics are comparable only when this matches."""
    from facerealism.data import train_holdout

    _, holdout = train_holdout(cfg)
    ids = "\n".join(sorted(str(i) for i in holdout["id"]))
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


def data_version(cfg: Config) -> str:
    """The DVC md5 of data/validated.parquet from dvc.lock when present, else the file's sha256."""
    target = catalog.VALIDATED.path(cfg)
    lock = Path("dvc.lock")
    if lock.exists():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []):
                if Path(out.get("path", "")) == Path("data/validated.parquet") and out.get("md5"):
                    return f"dvc-md5:{out['md5']}"
    if not target.exists():
        raise FileNotFoundError(f"missing input {target}: run the stage that produces it first")
    return f"sha256:{sha256_file(target)[:16]}"


def count_parameters(head_dir: Path) -> int:
    """Parameters in the head's safetensors file, read from its header (no tensors loaded)."""
    from safetensors import safe_open

    from facerealism.head import WEIGHTS

    with safe_open(str(head_dir / WEIGHTS), "pt") as f:
        return sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())


TRAINED_WITH = ("seed", "generate", "split", "train")  # the sections of head.json's config that made the head


def model_card(cfg: Config, meta: dict, candidate: dict, provenance: dict) -> str:
    """README-like markdown describing one registered head: what, trained how, scored how, from which data/code.

    How it was trained comes from the head's own record (head.json), never from the config register runs with.
    """
    trained = {k: v for k, v in meta.get("config", {}).items() if k in TRAINED_WITH}
    changes = meta.get("resume_changes") or {}
    resumed = "".join(f"- `{k}`: {was!r} -> {now!r} (changed on resume at step {meta.get('resumed_from_step')})\n"
                      for k, (was, now) in changes.items())
    rows = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(candidate.items()) if _number(v))
    prov = "\n".join(f"- **{k}**: `{v}`" for k, v in provenance.items())
    params = provenance.get("parameters")
    return f"""# {cfg.register.model_name}

A realism head (arXiv 2505.02255): maps FLUX.1-schnell-like portraits toward FLUX.1-dev-like detail.
Architecture `{meta.get('arch')}` {json.dumps(meta.get('kwargs', {}))}{f', {params} parameters' if params else ''};
weights as safetensors (`artifacts/head/head.safetensors`), no pickled objects.

## Use
```python
import mlflow, pandas as pd
m = mlflow.pyfunc.load_model("models:/{cfg.register.model_name}@champion")
out = m.predict(pd.DataFrame({{"image": ["portrait.png"]}}))  # column image: path, bytes or base64 PNG
```
Output: column `image`, base64 PNG of the same size.

## Held-out metrics
Higher `fd_diff.*` means the head moved images toward the dev-like domain.

| metric | value |
|---|---|
{rows}

## Provenance
{prov}

## Training config (from head.json)
{resumed}```yaml
{yaml.safe_dump(trained, sort_keys=False)}```

## Gate (register section when registered)
```yaml
{yaml.safe_dump(cfg.register.model_dump(mode="json"), sort_keys=False)}```
"""


# --- logging and registering ------------------------------------------------------------------

def log_pyfunc(cfg: Config, head_dir: Path, meta: dict, card: str, provenance: dict) -> str:
    """Log the head (plus its card and the config it was trained with) into its training run; returns the model URI."""
    import mlflow
    from mlflow.models import infer_signature

    from facerealism import pyfunc_model

    example = pd.DataFrame({"image": [pyfunc_model.encode_image(np.zeros((32, 32, 3), np.uint8))]})
    signature = infer_signature(example, example)
    with tempfile.TemporaryDirectory() as tmp, tracking.run(cfg, "register", run_id=meta.get("mlflow_run_id")):
        (Path(tmp) / "README.md").write_text(card)
        (Path(tmp) / "config.json").write_text(json.dumps(meta["config"], indent=2))
        info = mlflow.pyfunc.log_model(
            name="head",
            python_model=str(Path(pyfunc_model.__file__)),
            artifacts={"head": str(head_dir), "model_card": str(Path(tmp) / "README.md"),
                       "config": str(Path(tmp) / "config.json")},
            signature=signature,
            input_example=example,
            metadata=provenance,
            pip_requirements=["facerealism", "torch", "safetensors", "pillow", "pandas", "mlflow"],
        )
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
            suite: tuple[bool, list[str]] = (True, [])) -> dict:
    """Gate one registered version against the current champion and move the aliases; returns the decision.

    Args:
        suite: (sound, reasons) of `suite_check`; an unsound metric suite blocks promotion.
    """
    name = cfg.register.model_name
    with promotion_lock(client, cfg, name):
        champ = champion_state(client, name)
        champ_metrics, champ_split = version_state(champ) if champ is not None else (None, None)
        split_changed = champ is not None and champ_split != split
        passed, reasons = gate(cfg, candidate, champ_metrics, benchmark, split_changed=split_changed)
        passed, reasons = passed and suite[0], reasons + suite[1]
        client.set_model_version_tag(name, version, "gate.passed", str(passed))
        client.set_model_version_tag(name, version, "gate.reasons", " | ".join(reasons)[:4900])
        client.set_registered_model_alias(name, "challenger", version)
        if passed:
            client.set_registered_model_alias(name, "champion", version)
        # Written last: a version without it was cut off mid-decision, and a rerun decides it again.
        client.set_model_version_tag(name, version, DECIDED_TAG, time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        final = settle_champion(client, cfg, name)
    prev = None if champ is None else str(champ.version)
    return {"model": name, "version": version, "promoted": passed, "reasons": reasons,
            "previous_champion": prev, "champion": final, "model_uri": f"models:/{name}/{version}"}


def rich_decision(decision: dict) -> list:
    """The gate's decision for a terminal: the candidate's reasons, then each control's and dev's verdict."""
    from rich.table import Table

    verdict = "[green]promoted to champion[/]" if decision["promoted"] else "[red]not promoted[/]"
    t = Table(title=f"register: {decision['model']} v{decision['version']} {verdict}", show_header=False, min_width=70)
    t.add_column("reason")
    for reason in decision["reasons"]:
        t.add_row(reason)
    out = [t]
    rows = decision.get("suite", {}).get("rows", {})
    if rows:
        s = Table(title="the same gate on Table 4's controls and on dev (controls must fail, dev must pass)")
        s.add_column("row", style="bold")
        s.add_column("gate")
        s.add_column("first failing check")
        for label, r in rows.items():
            first = next((x for x in r["reasons"] if x.endswith(": fail")), "")
            s.add_row(label, "passes" if r["passed"] else "rejected", first)
        out.append(s)
    return out


def candidate_key(cfg: Config, head_dir: Path, candidate: dict, holdout: str) -> str:
    """Names one candidate: the head's files, its metrics, its held-out split and the gate's policy (register.*),
    not the code commit: the same candidate under the same gate is one registered version."""
    h = hashlib.sha256()
    for path in sorted(p for p in head_dir.rglob("*") if p.is_file()):
        h.update(path.relative_to(head_dir).as_posix().encode() + b"\0" + sha256_file(path).encode())
    h.update(json.dumps([candidate, holdout, cfg.register.model_dump(mode="json")], sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def registered_candidate(client, name: str, key: str):
    """The version already registered for this candidate key (a rerun or a retry), or None."""
    versions = [mv for mv in client.search_model_versions(f"name='{name}'") if mv.tags.get(CANDIDATE_TAG) == key]
    return min(versions, key=lambda mv: int(mv.version)) if versions else None


def run(cfg: Config) -> dict:
    head_dir = catalog.HEAD.path(cfg)
    meta = read_json(head_dir / "head.json")
    candidate = read_json(catalog.METRICS.path(cfg))
    benchmark = read_json(catalog.BENCHMARK_JSON.path(cfg))
    sound, suite_reasons, suite_rows = suite_check(cfg, catalog.TABLE4.path(cfg))
    provenance = {"data_version": data_version(cfg), "holdout_fingerprint": holdout_fingerprint(cfg),
                  "git_commit": tracking.git_commit(), "parameters": count_parameters(head_dir)}
    card = model_card(cfg, meta, candidate, provenance)
    mlflow = tracking.setup(cfg)
    client = mlflow.MlflowClient()
    name = cfg.register.model_name
    key = candidate_key(cfg, head_dir, candidate, provenance["holdout_fingerprint"])
    # Idempotent: a rerun (after a kill, a retry, or with nothing changed) finds the version it already made.
    existing = registered_candidate(client, name, key)
    if existing is not None and DECIDED_TAG in existing.tags:
        decision = {"model": name, "version": str(existing.version), "promoted": existing.tags["gate.passed"] == "True",
                    "reasons": existing.tags.get("gate.reasons", "").split(" | "),
                    "previous_champion": None, "champion": settle_champion(client, cfg, name),
                    "model_uri": f"models:/{name}/{existing.version}", "reused": True}
        return _finish(cfg, decision, provenance, sound, suite_rows, existing.run_id)
    if existing is not None:
        version, run_id = str(existing.version), existing.run_id  # registered, but the run died before deciding
    else:
        model_uri = log_pyfunc(cfg, head_dir, meta, card, provenance)
        mv = mlflow.register_model(model_uri, name, tags={CANDIDATE_TAG: key})  # the key lands with the version
        version, run_id = str(mv.version), mv.run_id
    # Tags first, decision second: a racing promotion's settle step must see our metrics and split.
    for k, v in candidate.items():
        if _number(v):
            client.set_model_version_tag(name, version, f"metric.{k}", str(v))
    size, speed = throughput(cfg, benchmark)
    if speed is not None:
        client.set_model_version_tag(name, version, f"benchmark.images_per_s.{size}px", str(speed))
    client.set_model_version_tag(name, version, SPLIT_TAG, provenance["holdout_fingerprint"])
    client.set_model_version_tag(name, version, "data.version", provenance["data_version"])
    client.set_model_version_tag(name, version, "git.commit", provenance["git_commit"])
    # The registry caps descriptions at 5000 characters: the summary here, the whole card in the model's artifacts.
    summary = card.split("## Training config")[0] + "Full card with the training config: `artifacts/README.md`.\n"
    client.update_model_version(name, version, description=summary[:5000])
    decision = promote(client, cfg, version, candidate, benchmark, provenance["holdout_fingerprint"],
                       suite=(sound, suite_reasons))
    return _finish(cfg, decision, provenance, sound, suite_rows, run_id)


def _finish(cfg: Config, decision: dict, provenance: dict, sound: bool, suite_rows: dict, run_id: str | None) -> dict:
    """Write reports/promotion.json (with the MLflow run the version came from) and return the stage summary."""
    import mlflow

    decision.update(provenance)
    decision["run_id"] = run_id or ""
    try:
        decision["experiment_id"] = mlflow.MlflowClient().get_run(run_id).info.experiment_id if run_id else ""
    except Exception:  # noqa: BLE001 - a link detail; the decision itself is already recorded in the registry
        decision["experiment_id"] = ""
    decision["suite"] = {"sound": sound, "rows": suite_rows}
    write_json(catalog.PROMOTION.path(cfg), decision)
    from rich.console import Console

    for t in rich_decision(decision):
        Console().print(t)
    return {"version": decision["version"], "promoted": decision["promoted"], "champion": decision["champion"],
            **({"reused": True} if decision.get("reused") else {})}
