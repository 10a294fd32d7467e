"""Stage `audit`: who the prompts depict — region and name-gender mix of enriched vs baseline prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facerealism.config import Config
from facerealism.files import read_parquet, write_json


def normalised_entropy(counts: pd.Series, n_categories: int) -> float:
    """Shannon entropy / log(K): 1.0 is a perfectly even mix over the K intended categories."""
    p = counts[counts > 0] / counts.sum()
    if n_categories <= 1 or p.empty:
        return 0.0
    return float(-(p * np.log(p)).sum() / np.log(n_categories))


def kl_to_target(counts: pd.Series, target: dict[str, float]) -> float:
    """KL(observed || target) in nats; categories absent from the target make it infinite."""
    p = counts / counts.sum()
    kl = 0.0
    for cat, pc in p.items():
        if pc == 0:
            continue
        q = target.get(cat, 0.0)
        if q == 0:
            return float("inf")
        kl += pc * np.log(pc / q)
    return float(kl)


def distribution(df: pd.DataFrame, column: str) -> dict[str, float]:
    return {str(k): round(float(v), 4) for k, v in df[column].value_counts(normalize=True).sort_index().items()}


def audit_prompts(cfg: Config, prompts: pd.DataFrame) -> dict:
    """Per template: the region and gender mix, its evenness and its distance to the target mix."""
    from facerealism.stages.prompts import LOCALE_REGIONS

    regions = sorted({LOCALE_REGIONS[loc] for loc in cfg.prompts.locales})
    region_target = {r: 1.0 / len(regions) for r in regions}
    f = cfg.audit.target_female_fraction
    gender_target = {"female": f, "male": 1.0 - f}
    out = {}
    for template, group in prompts.groupby("template"):
        reg, gen = group["region"].value_counts(), group["gender"].value_counts()
        out[str(template)] = {
            "n": len(group),
            "region": distribution(group, "region"),
            "gender": distribution(group, "gender"),
            "locales": int(group["locale"].nunique()),
            "region_entropy": round(normalised_entropy(reg, len(regions)), 4),
            "region_kl_to_target": round(kl_to_target(reg, region_target), 4),
            "gender_kl_to_target": round(kl_to_target(gen, gender_target), 4),
        }
    return out


def run(cfg: Config) -> dict:
    prompts = read_parquet(Path(cfg.paths.data) / "prompts.parquet")
    manifest = read_parquet(Path(cfg.paths.data) / "validated.parquet")
    # Audit what will actually be trained on: prompts whose pair survived validation.
    used = prompts[prompts["id"].isin(manifest["id"])]
    report = {"templates": audit_prompts(cfg, used), "min_region_entropy": cfg.audit.min_region_entropy,
              "face_attributes": {"available": False,
                                  "reason": "no offline model predicts perceived gender/age/ethnicity here; "
                                            "prompt-side (sampled name) attributes are reported instead"}}
    enriched = report["templates"].get("enriched", {})
    report["diverse"] = enriched.get("region_entropy", 0.0) >= cfg.audit.min_region_entropy
    write_json(Path(cfg.paths.reports) / "audit.json", report)
    return {"enriched_region_entropy": enriched.get("region_entropy"),
            "enriched_regions": len(enriched.get("region", {})), "diverse": report["diverse"]}
