"""Stage `register`: log the head as an MLflow pyfunc with its model card, register it, let the gate decide `champion`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from facerealism.config import Config
from facerealism.config.architectures import head_recipe
from facerealism.data import catalog
from facerealism.files import read_json, write_json
from facerealism.mlops import tracking
from facerealism.mlops.card import count_parameters, data_version, fitted_card, holdout_fingerprint, model_card
from facerealism.mlops.registry import (APPROVAL_TAG, CANDIDATE_TAG, DECIDED_TAG, SPLIT_TAG, candidate_key,
                                        log_fitted_pyfunc, log_pyfunc, promote, registered_candidate, settle_champion)
from facerealism.scoring import fitted
from facerealism.scoring.gate import gate, is_number, suite_check, throughput
from facerealism.scoring.photo import PHOTO_RULES
from facerealism.scoring.table4 import flat_metrics


def run(cfg: Config) -> dict:
    head_dir = catalog.HEAD.path(cfg)
    meta = read_json(head_dir / "head.json")
    candidate = read_json(catalog.METRICS.path(cfg))
    benchmark = read_json(catalog.BENCHMARK_JSON.path(cfg))
    # The controls and dev rows (the suite check), and the fitted rows with their fitted numbers (promote_fitted).
    table_path = catalog.TABLE4.path(cfg)
    table = read_json(table_path) if cfg.register.check_controls or table_path.exists() else {}
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
            decision["approval"] = {"status": existing.tags[APPROVAL_TAG],
                                    "reason": existing.tags.get("approval.reason", "")}
        decision["fitted"] = register_fitted(cfg, client, table, decision, candidate, provenance,
                                             (sound, suite_reasons))
        decision["champion"] = decision["fitted"].get("champion", decision["champion"])
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
    client.set_model_version_tag(name, version, "kind", "learned head")
    client.set_model_version_tag(name, version, "recipe", r.id)
    client.set_model_version_tag(name, version, "recipe_label", r.label)
    # The registry caps descriptions at 5000 characters: the summary here, the whole card in the model's artifacts.
    summary = card.split("## Training config")[0] + "Full card with the training config: `artifacts/README.md`.\n"
    client.update_model_version(name, version, description=summary[:5000])
    decision = promote(client, cfg, version, candidate, benchmark, provenance["holdout_fingerprint"],
                       suite=(sound, suite_reasons))
    decision["fitted"] = register_fitted(cfg, client, table, decision, candidate, provenance, (sound, suite_reasons))
    decision["champion"] = decision["fitted"].get("champion", decision["champion"])  # a fitted promotion moved it
    return _finish(cfg, decision, provenance, sound, suite_rows, run_id)


def fitted_candidate(table: dict, label: str, head: dict) -> dict:
    """A fitted row's metrics as the gate reads them: flat_metrics of its Table 4 row plus its own photo check."""
    photo = table["rows"][label]["photo"]
    return {**flat_metrics(table, label), **{f"photo.{rule.key}": photo[rule.key] for rule in PHOTO_RULES},
            "holdout_pairs": head.get("holdout_pairs"), "fitted.best": label}


def filter_throughput(f, size: int, repeats: int = 5) -> float:
    """Images per second of a fitted filter on one size x size image (median of `repeats`, after a warm-up)."""
    import time

    import numpy as np

    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    f(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(image)
        times.append(time.perf_counter() - start)
    return 1.0 / max(float(np.median(times)), 1e-9)


def register_fitted(cfg: Config, client, table: dict, head: dict, candidate: dict, provenance: dict,
                    suite: tuple[bool, list[str]]) -> dict:
    """The honest champion: when the learned head was not promoted, the best fitted baseline that passes the photo
    rules (Table 4's, rebuilt from its fitted numbers) is registered as a fitted filter and gated like a head, on
    its own metrics, throughput and photo check; it must pass the whole gate itself. Otherwise nothing is registered.

    Returns:
        {"considered": False, "why"} when no filter was tried; else {"label", "numbers", "passed_precheck",
        "reasons", "why"} and, once registered, the version's decision ("version", "promoted", "champion", ...).
    """
    import mlflow

    r = cfg.register
    label = candidate.get("fitted.best")
    if head["promoted"]:
        return {"considered": False, "why": "the learned head was promoted"}
    if "approval" in head:  # it passed the gate and waits for (or got) a person's answer (register.human_approval)
        return {"considered": False, "why": f"the learned head passed the gate and is held for approval "
                                            f"({head['approval']['status']})"}
    if not r.promote_fitted:
        return {"considered": False, "why": "register.promote_fitted is false: nothing is promoted in the head's place"}
    if not label:
        none = ("no fitted baseline was scored" if not candidate.get("fitted.scored")
                else "no fitted baseline passes the photo rules")
        return {"considered": False, "why": f"{none}, so there is no filter to promote instead"}
    if label not in table.get("fitted", {}) or "photo" not in table.get("rows", {}).get(label, {}):
        return {"considered": False, "why": f"table4.json holds no fitted numbers or photo check for {label}, so it "
                                            f"cannot be registered"}
    fname, params = fitted.name_of(label), table["fitted"][label]
    metrics = fitted_candidate(table, label, candidate)
    size = r.throughput_size or cfg.benchmark.sizes[0]
    speed = filter_throughput(fitted.rebuild(fname, params), size)
    bench = {"head_speed": {str(size): {"fp32": {"images_per_s": speed}}}}  # as benchmark.json holds the head's
    # Registered only if it passes the gate's absolute rules (and the suite is sound): a filter that fails them
    # is no champion, and a version of it would only crowd the registry. The champion is compared under the lock.
    passed, reasons = gate(cfg, metrics, None, bench)
    passed, reasons = passed and suite[0], reasons + suite[1]
    why = (f"the learned head was not promoted, and {label} (C2ST vs dev {metrics['c2st.dev_vs_enhanced']:.3f}) is "
           f"the fitted baseline a head must beat")
    out = {"considered": True, "label": label, "numbers": fitted.size(params), "passed_precheck": passed,
           "reasons": reasons, "why": why}
    if not passed:
        return out
    name = r.model_name
    with tempfile.TemporaryDirectory() as tmp:  # the key hashes the filter's numbers as the head's hashes its files
        write_json(Path(tmp) / "filter.json", {"name": fname, "params": params})
        key = candidate_key(cfg, Path(tmp), metrics, provenance["holdout_fingerprint"], suite[1])
    existing = registered_candidate(client, name, key)
    if existing is not None and DECIDED_TAG in existing.tags:
        return {**out, "version": str(existing.version), "promoted": existing.tags["gate.passed"] == "True",
                "reasons": existing.tags.get("gate.reasons", "").split(" | "), "reused": True,
                "champion": settle_champion(client, cfg, name), "model_uri": f"models:/{name}/{existing.version}"}
    if existing is not None:
        version = str(existing.version)
    else:
        card = fitted_card(cfg, fname, params, metrics, provenance, why)
        mv = mlflow.register_model(log_fitted_pyfunc(cfg, fname, params, card, provenance), name,
                                   tags={CANDIDATE_TAG: key})
        version = str(mv.version)
        client.update_model_version(name, version, description=card.split("## Fitted numbers")[0][:5000])
    for k, v in metrics.items():
        if is_number(v):
            client.set_model_version_tag(name, version, f"metric.{k}", str(v))
    tags = {f"benchmark.images_per_s.{size}px": str(speed),
            SPLIT_TAG: provenance["holdout_fingerprint"], "data.version": provenance["data_version"],
            "git.commit": provenance["git_commit"], "kind": "fitted filter", "recipe": f"fitted: {fname}",
            "recipe_label": f"fitted filter: {fname} ({fitted.size(params)} numbers)"}
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    decision = promote(client, cfg, version, metrics, bench, provenance["holdout_fingerprint"], suite=suite,
                       fitted_filter=True)
    return {**out, **decision}


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
    decision["outcome"], decision["outcome_why"] = outcome(decision)
    write_json(catalog.PROMOTION.path(cfg), decision)
    from rich.console import Console

    for t in rich_decision(decision):
        Console().print(t)
    f = decision.get("fitted", {})
    return {"version": decision["version"], "promoted": decision["promoted"], "champion": decision["champion"],
            **({"reused": True} if decision.get("reused") else {}),
            **({"fitted_version": f["version"], "fitted_promoted": f["promoted"]} if "version" in f else {})}


def outcome(decision: dict) -> tuple[str, str]:
    """What this run promoted ("learned head", "fitted filter" or "nothing") and why, in one sentence each way."""
    f = decision.get("fitted", {})
    if decision["promoted"]:
        return "learned head", f"the learned head (version {decision['version']}) passed every rule of the gate"
    if "approval" in decision:
        return "nothing yet", (f"the learned head (version {decision['version']}) passed every rule of the gate and "
                               f"is held for approval ({decision['approval']['status']})")
    first = next((r for r in decision["reasons"] if r.endswith(": fail")), "it failed the gate")
    head = f"the learned head (version {decision['version']}) was not promoted: {first}"
    if f.get("promoted"):
        return "fitted filter", (f"{head}; {f['label']}, a fitted filter of {f['numbers']} numbers (not a learned "
                                 f"head), passed the gate itself and was promoted as version {f['version']}")
    if not f.get("considered"):
        return "nothing", f"{head}; no fitted filter was tried: {f.get('why', 'not considered')}"
    fail = next((r for r in f.get("reasons", []) if r.endswith(": fail")), "it did not pass the gate")
    return "nothing", f"{head}; {f['label']} (a fitted filter) was not promoted either: {fail}"


def rich_decision(decision: dict) -> list:
    """The gate's decision for a terminal: the candidate's reasons, then each control's and dev's verdict."""
    from rich.table import Table

    verdict = "[green]promoted to champion[/]" if decision["promoted"] else "[red]not promoted[/]"
    t = Table(title=f"register: {decision['model']} v{decision['version']} (learned head) {verdict}",
              show_header=False, min_width=70)
    t.add_column("reason")
    for reason in decision["reasons"]:
        t.add_row(reason)
    out = [t]
    f = decision.get("fitted", {})
    if f.get("considered"):
        done = ("[green]promoted to champion[/]" if f.get("promoted") else "[red]not promoted[/]") if "version" in f \
            else "[red]not registered[/]"
        t = Table(title=f"register: {f['label']} (fitted filter, {f['numbers']} numbers) {done}", show_header=False,
                  min_width=70)
        t.add_column("reason")
        for reason in f.get("reasons", []):
            t.add_row(reason)
        out.append(t)
    if "outcome" in decision:
        t = Table(title=f"decision: {decision['outcome']}", show_header=False, min_width=70)
        t.add_column("why")
        t.add_row(decision["outcome_why"])
        out.append(t)
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
