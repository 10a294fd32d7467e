"""Stage `register`: log the head as an MLflow pyfunc with its model card, register it, let the gate decide `champion`."""

from __future__ import annotations

from facerealism.config import Config
from facerealism.config.architectures import head_recipe
from facerealism.data import catalog
from facerealism.files import read_json, write_json
from facerealism.mlops import tracking
from facerealism.mlops.card import count_parameters, data_version, holdout_fingerprint, model_card
from facerealism.mlops.registry import (APPROVAL_TAG, CANDIDATE_TAG, DECIDED_TAG, SPLIT_TAG, candidate_key, log_pyfunc, promote,
                                        registered_candidate, settle_champion)
from facerealism.scoring.gate import is_number, suite_check, throughput


def run(cfg: Config) -> dict:
    head_dir = catalog.HEAD.path(cfg)
    meta = read_json(head_dir / "head.json")
    candidate = read_json(catalog.METRICS.path(cfg))
    benchmark = read_json(catalog.BENCHMARK_JSON.path(cfg))
    table = read_json(catalog.TABLE4.path(cfg)) if cfg.register.check_controls else {}  # the controls and dev rows
    sound, suite_reasons, suite_rows = suite_check(cfg, table)
    provenance = {"data_version": data_version(cfg), "holdout_fingerprint": holdout_fingerprint(cfg),
                  "git_commit": tracking.git_commit(), "parameters": count_parameters(head_dir)}
    card = model_card(cfg, meta, candidate, provenance)
    mlflow = tracking.setup(cfg)
    client = mlflow.MlflowClient()
    name = cfg.register.model_name
    key = candidate_key(cfg, head_dir, candidate, provenance["holdout_fingerprint"], suite_reasons)
    # Idempotent: a rerun (after a kill, a retry, or with nothing changed) finds the version it already made.
    existing = registered_candidate(client, name, key)
    if existing is not None and DECIDED_TAG in existing.tags:
        decision = {"model": name, "version": str(existing.version), "promoted": existing.tags["gate.passed"] == "True",
                    "reasons": existing.tags.get("gate.reasons", "").split(" | "),
                    "previous_champion": None, "champion": settle_champion(client, cfg, name),
                    "model_uri": f"models:/{name}/{existing.version}", "reused": True}
        if APPROVAL_TAG in existing.tags:  # held for a person (register.human_approval): their answer, or pending
            decision["approval"] = {"status": existing.tags[APPROVAL_TAG], "reason": existing.tags.get("approval.reason", "")}
        return _finish(cfg, decision, provenance, sound, suite_rows, existing.run_id)
    if existing is not None:
        version, run_id = str(existing.version), existing.run_id  # registered, but the run died before deciding
    else:
        model_uri = log_pyfunc(cfg, head_dir, meta, card, provenance)
        mv = mlflow.register_model(model_uri, name, tags={CANDIDATE_TAG: key})  # the key lands with the version
        version, run_id = str(mv.version), mv.run_id
    # Tags first, decision second: a racing promotion's settle step must see our metrics and split.
    for k, v in candidate.items():
        if is_number(v):
            client.set_model_version_tag(name, version, f"metric.{k}", str(v))
    size, speed = throughput(cfg, benchmark)
    if speed is not None:
        client.set_model_version_tag(name, version, f"benchmark.images_per_s.{size}px", str(speed))
    client.set_model_version_tag(name, version, SPLIT_TAG, provenance["holdout_fingerprint"])
    client.set_model_version_tag(name, version, "data.version", provenance["data_version"])
    client.set_model_version_tag(name, version, "git.commit", provenance["git_commit"])
    r = head_recipe(meta)  # what was trained, by name (ESA-CycleGAN only for the paper's unpaired recipe)
    client.set_model_version_tag(name, version, "recipe", r.id)
    client.set_model_version_tag(name, version, "recipe_label", r.label)
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
