"""A person's approval before `@champion` moves (register.human_approval): what they are shown and their answer."""

from __future__ import annotations

import time

from facerealism.config import Config
from facerealism.data import catalog
from facerealism.errors import UserError
from facerealism.files import read_json, write_json
from facerealism.mlops import tracking
from facerealism.mlops.registry import APPROVAL_TAG, promotion_lock, settle_champion


def pending(cfg: Config) -> dict | None:
    """The register stage's decision when it waits for a person (reports/promotion.json), else None."""
    path = catalog.PROMOTION.path(cfg)
    if not path.exists():
        return None
    decision = read_json(path)
    return decision if (decision.get("approval") or {}).get("status") == "pending" else None


def summary(cfg: Config, decision: dict) -> str:
    """Markdown for the approval form: the gate's checks and what people said (reports/ratings.json)."""
    path = catalog.RATINGS_JSON.path(cfg)
    ratings = read_json(path) if path.exists() else None
    lines = [f"**{decision['model']} v{decision['version']}** passed the promotion gate; current champion: "
             f"{decision.get('champion') or 'none'}. Approve to make it `@champion`; reject (with a reason) to keep "
             f"it `challenger`.", "", "Gate checks:", *(f"- {r}" for r in decision["reasons"]), ""]
    if ratings:
        lines.append(f"People's choices ({ratings['raters']['counted']} raters counted):")
        for c in ratings["comparisons"].values():
            if c["preference"] is not None:
                lines.append(f"- {c['a']} over {c['b']}: {100 * c['preference']:.0f} % of {c['votes']} votes, 95 % CI "
                             f"[{100 * c['ci95'][0]:.0f}, {100 * c['ci95'][1]:.0f}] %")
    else:
        lines.append("No ratings yet (`facerealism rate`).")
    return "\n".join(lines)


def decide(cfg: Config, version: str, approve: bool, reason: str) -> dict:
    """Record a person's answer on a held version: approved -> `@champion` (then the usual settle step);
    rejected -> it stays `challenger`, gate.passed=rejected and the reason as the tag approval.reason.

    Returns:
        The updated decision, also written to reports/promotion.json.
    """
    if not approve and not reason.strip():
        raise UserError("a rejection needs a reason (it is kept on the version as the tag approval.reason)")
    mlflow = tracking.setup(cfg)
    client, name = mlflow.MlflowClient(), cfg.register.model_name
    mv = client.get_model_version(name, str(version))
    if mv.tags.get(APPROVAL_TAG) != "pending":
        raise UserError(f"{name} v{version} is not waiting for approval ({APPROVAL_TAG}={mv.tags.get(APPROVAL_TAG)!r})")
    with promotion_lock(client, cfg, name):
        client.set_model_version_tag(name, version, "approval.reason", reason)
        client.set_model_version_tag(name, version, "approval.decided_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        if approve:
            client.set_model_version_tag(name, version, "gate.passed", "True")
            client.set_registered_model_alias(name, "champion", version)
        else:
            client.set_model_version_tag(name, version, "gate.passed", "rejected")
        client.set_model_version_tag(name, version, APPROVAL_TAG, "approved" if approve else "rejected")
        champion = settle_champion(client, cfg, name)
    path = catalog.PROMOTION.path(cfg)
    decision = read_json(path) if path.exists() else {"model": name, "version": str(version), "reasons": []}
    decision.update(promoted=approve and champion == str(version), champion=champion,
                    approval={"status": "approved" if approve else "rejected", "reason": reason})
    write_json(path, decision)
    return decision
