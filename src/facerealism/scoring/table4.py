"""Table 4's layout, in one place: its reference row labels, how a row flattens into metrics.json (the keys the register
gate reads, the photo rules among them) and into the flat rows a Prefect artifact shows. evaluate builds the table; gate,
preflight and dag read it."""

from __future__ import annotations

from facerealism.config import Config
from facerealism.scoring.photo import PHOTO_RULES

SCHNELL, DEV = "FLUX.1-schnell", "FLUX.1-dev"


def flat_metrics(table: dict, head_label: str) -> dict:
    """metrics.json: the main head's row under the flat keys the register gate and DVC read."""
    rows = table["rows"]
    head, ref = rows[head_label], rows[SCHNELL]
    flat: dict = {}
    for space, r in head["fd"].items():
        flat[f"fd_enh_schnell.{space}"] = r["fd_schnell"]
        flat[f"fd_enh_dev.{space}"] = r["fd_dev"]
        flat[f"fd_diff.{space}"] = r["fd_diff"]
        flat[f"fd_schnell_dev.{space}"] = ref["fd"][space]["fd_dev"]
        if "fd_diff_ci" in r:
            flat[f"fd_diff_ci_low.{space}"], flat[f"fd_diff_ci_high.{space}"] = r["fd_diff_ci"]
    flat["c2st.dev_vs_schnell"] = ref["c2st_vs_dev"]
    flat["c2st.dev_vs_schnell_ci_low"], flat["c2st.dev_vs_schnell_ci_high"] = ref["c2st_ci"]
    flat["c2st.dev_vs_enhanced"] = head["c2st_vs_dev"]
    flat["c2st.dev_vs_enhanced_ci_low"], flat["c2st.dev_vs_enhanced_ci_high"] = head["c2st_ci"]
    flat["c2st.dev_vs_enhanced_auc"] = head["c2st_auc"]
    runs = head["c2st_runs"]
    flat["c2st.dev_vs_enhanced_worst"], flat["c2st.dev_vs_enhanced_best"] = runs["worst"], runs["best"]
    flat["c2st.dev_vs_enhanced_worst_ci_high"] = runs["worst_ci_high"]
    place = head["placement"] or {"ci": [None, None]}  # None without its dev twins: the gate reads it as missing
    flat["placement.gain"], flat["placement.share"] = place.get("gain"), place.get("share")
    flat["placement.gain_ci_low"], flat["placement.gain_ci_high"] = place["ci"]
    flat["halo.vs_dev"] = head["halo_vs_dev"]
    for col, value_key in (("ssim", "mean"), ("lpips", "mean"), ("identity", "mean_cosine")):
        c = head[col]
        flat[f"{col}.available"] = c["available"]
        if c["available"]:
            flat[f"{col}.{value_key}"] = c[value_key]
        else:
            flat[f"{col}.reason"] = c["reason"]
    fid = head["fid"]
    flat["fid.available"] = fid["available"]
    if fid["available"]:
        flat.update({"fid.fid_enhanced_schnell": fid["fid_schnell"], "fid.fid_enhanced_dev": fid["fid_dev"],
                     "fid.kid_enhanced_schnell": fid["kid_schnell"], "fid.kid_enhanced_dev": fid["kid_dev"],
                     "fid.fid_diff": fid["fid_diff"]})
    else:
        flat["fid.reason"] = fid["reason"]
    for col, keys in (("fd_dinov2", ("fd_schnell", "fd_dev", "fd_diff")), ("cmmd", ("cmmd_schnell", "cmmd_dev", "cmmd_diff"))):
        c = head[col]
        flat[f"{col}.available"] = c["available"]
        flat.update({f"{col}.{k}": c[k] for k in keys} if c["available"] else {f"{col}.reason": c["reason"]})
    return flat


# Keys run() adds to metrics.json beside flat_metrics' own.
RUN_KEYS = ("holdout_pairs", "best_head", *(f"photo.{rule.key}" for rule in PHOTO_RULES),
            "fitted.best", "fitted.scored", "c2st.dev_vs_fitted", "c2st.dev_vs_fitted_ci_low",
            "c2st.dev_vs_fitted_ci_high")
OPTIONAL_COLUMNS = ("ssim", "lpips", "identity", "fid", "fd_dinov2", "cmmd")


def metric_names(cfg: Config) -> set[str]:
    """Every key metrics.json can hold under this config (an optional column's value keys included, as if it were
    available): the names the register gate may read. Built by flat_metrics itself on a table of this shape."""
    fd = {"fd_schnell": 0.0, "fd_dev": 0.0, "fd_diff": 0.0, **({"fd_diff_ci": [0.0, 0.0]} if cfg.evaluate.bootstrap else {})}
    available = {"available": True, "mean": 0.0, "mean_cosine": 0.0, "fid_schnell": 0.0, "fid_dev": 0.0,
                 "kid_schnell": 0.0, "kid_dev": 0.0, "fid_diff": 0.0, "fd_schnell": 0.0, "fd_dev": 0.0,
                 "fd_diff": 0.0, "cmmd_schnell": 0.0, "cmmd_dev": 0.0, "cmmd_diff": 0.0}
    runs = {"runs": [0.5], "worst": 0.5, "best": 0.5, "worst_ci_high": 0.5}
    row = {"fd": {space: fd for space in cfg.evaluate.spaces}, "c2st_vs_dev": 0.5, "c2st_ci": [0.5, 0.5],
           "c2st_auc": 0.5, "c2st_runs": runs, "placement": {"gain": 0.0, "ci": [0.0, 0.0], "share": 0.0, "n": 1}, "halo_vs_dev": 1.0,
           **{col: available for col in OPTIONAL_COLUMNS}}
    names = set(flat_metrics({"rows": {SCHNELL: row, "head": row}}, "head"))
    return names | set(RUN_KEYS) | {f"{col}.reason" for col in OPTIONAL_COLUMNS}


def table4_rows(table: dict) -> list[dict]:
    """Table 4 (reports/table4.json) as flat rows: FD and FD_diff per space, C2ST and its spread, placement gain,
    halo over dev's, SSIM; "n/a" where unavailable."""
    rows = []
    for label in table.get("order", []):
        row = table["rows"][label]
        flat = {"row": label}
        for space, fd in (row.get("fd") or {}).items():
            for key, value in (fd.items() if isinstance(fd, dict) else []):
                if isinstance(value, (int, float)):
                    flat[f"{key}.{space}"] = round(float(value), 4)
        for col in ("c2st_vs_dev",):
            if isinstance(row.get(col), (int, float)):
                flat[col] = round(float(row[col]), 4)
        if row.get("c2st_runs"):  # the spread over fold seeds x test halves; the gate reads the worst
            flat["c2st_best"], flat["c2st_worst"] = (round(row["c2st_runs"][k], 4) for k in ("best", "worst"))
        if row.get("placement"):
            flat["placement_gain"] = round(row["placement"]["gain"], 4)
        if isinstance(row.get("halo_vs_dev"), (int, float)):
            flat["halo_vs_dev"] = round(row["halo_vs_dev"], 3)
        for col in ("ssim", "lpips", "identity", "fid", "fd_dinov2", "clip_iqa"):
            cell = row.get(col)
            if isinstance(cell, dict):
                flat[col] = round(float(cell["mean"]), 4) if cell.get("available") and "mean" in cell else "n/a"
        rows.append(flat)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k, "") for k in keys} for r in rows]
