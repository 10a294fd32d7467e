"""The rating results of the trained head: reports/ratings.json, MLflow metrics on the head's run, the report."""

from __future__ import annotations

from facerealism.data import catalog
from facerealism.files import write_json
from facerealism.rating.trials import build_set, read_set
from facerealism.rating.votes import VoteStore, preference


def summarise(cfg, log_to_mlflow: bool = True) -> dict:
    """Add up the votes on the head's rating set; write reports/ratings.json, log it to the head's MLflow run
    (metrics rating.<comparison>.preference / ci_low / ci_high / votes / raters) and rebuild report.html.

    Returns:
        The preference (`votes.preference`) plus the campaign, the fitted baseline rated and the head's run.
    """
    from facerealism.report import html as html_report

    folder = build_set(cfg)
    items = read_set(folder)
    result = {"campaign": items["campaign"], "fitted": items["fitted"], "head_run_id": items.get("head_run_id"),
              **preference(VoteStore(cfg.rate.database).votes(items["campaign"]), cfg.rate.min_attention)}
    path = catalog.RATINGS_JSON.path(cfg)
    write_json(path, result)
    if log_to_mlflow:
        from facerealism.mlops import tracking

        metrics = {}
        for name, c in result["comparisons"].items():
            metrics[f"rating.{name}.votes"], metrics[f"rating.{name}.raters"] = c["votes"], c["raters"]
            if c["preference"] is not None:
                metrics[f"rating.{name}.preference"] = c["preference"]
                metrics[f"rating.{name}.ci_low"], metrics[f"rating.{name}.ci_high"] = c["ci95"]
        metrics["rating.raters_counted"] = result["raters"]["counted"]
        metrics["rating.raters_careless"] = len(result["raters"]["careless"])
        # The head's own training run: the candidate a version of the registry points back to.
        with tracking.run(cfg, "rate", run_id=result["head_run_id"]):
            tracking.log_metrics(metrics)
            tracking.log_artifact(path, "rate")
    html_report.write_report(cfg.paths.reports)
    return result
