"""Stage `validate`: a great-expectations suite over the manifest and per-image statistics; quarantine + gate."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from facerealism.config import Config
from facerealism.files import load_rgb, read_parquet, write_json, write_parquet
from facerealism.progress import progress

REQUIRED_COLUMNS = ["id", "prompt", "seed", "schnell_path", "dev_path", "schnell_sha256", "dev_sha256",
                    "width", "height", "backend"]


class ValidationFailed(RuntimeError):
    """The failed fraction exceeded validate.max_failed_fraction."""


def image_stats(path: str) -> dict:
    """Decode one image and measure what the suite checks; an unreadable file gives decodes=False."""
    # Unmeasurable values are None: GX skips nulls, so a corrupt file fails `decodes` alone.
    out = {"exists": os.path.exists(path), "decodes": False, "width": None, "height": None, "std": None}
    if not out["exists"]:
        return out
    try:
        img = load_rgb(path)
    except ValueError:
        return out
    out.update(decodes=True, height=img.shape[0], width=img.shape[1], std=float(img.std()))
    return out


def per_image_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per pair: manifest columns plus measured statistics of both images."""
    rows = []
    with progress() as bar:
        task = bar.add_task("validate: decode", total=len(manifest))
        for row in manifest.itertuples():
            s, d = image_stats(row.schnell_path), image_stats(row.dev_path)
            rows.append({**{f"schnell_{k}": v for k, v in s.items()}, **{f"dev_{k}": v for k, v in d.items()}})
            bar.advance(task)
    stats = pd.DataFrame(rows, index=manifest.index)
    return pd.concat([manifest.drop(columns=["width", "height"]), stats], axis=1)


def build_suite(cfg: Config, gx):
    """The expectations, one per check; row-level ones feed the quarantine."""
    size = cfg.generate.size
    e = gx.expectations
    exps = []
    for col in REQUIRED_COLUMNS:
        if col in ("width", "height"):
            continue
        exps.append(e.ExpectColumnToExist(column=col))
    exps += [e.ExpectColumnValuesToBeUnique(column=c) for c in ("id", "schnell_sha256", "dev_sha256")]
    exps += [e.ExpectColumnValuesToNotBeNull(column=c) for c in ("prompt", "seed")]
    for side in ("schnell", "dev"):
        exps += [
            e.ExpectColumnValuesToBeInSet(column=f"{side}_exists", value_set=[True]),
            e.ExpectColumnValuesToBeInSet(column=f"{side}_decodes", value_set=[True]),
            e.ExpectColumnValuesToBeBetween(column=f"{side}_width", min_value=size, max_value=size),
            e.ExpectColumnValuesToBeBetween(column=f"{side}_height", min_value=size, max_value=size),
            e.ExpectColumnValuesToBeBetween(column=f"{side}_std", min_value=cfg.validate_.min_std),
        ]
    return exps


def run_suite(cfg: Config, table: pd.DataFrame) -> dict:
    """Run the suite in an ephemeral GX context (no files, no network); returns the result as a dict."""
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    batch_def = ctx.data_sources.add_pandas("pairs").add_dataframe_asset("manifest").add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name="pairs"))
    for exp in build_suite(cfg, gx):
        suite.add_expectation(exp)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="pairs", data=batch_def, suite=suite))
    result = vd.run(batch_parameters={"dataframe": table},
                    result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["id"]})
    return result.to_json_dict()


def summarise(result: dict, table: pd.DataFrame) -> tuple[list[dict], dict[str, list[str]]]:
    """Per-expectation lines and, per pair id, the expectations it failed."""
    lines, reasons = [], {}
    for r in result["results"]:
        cfgx = r["expectation_config"]
        name = cfgx["type"] + ("(" + cfgx["kwargs"].get("column", "") + ")" if cfgx["kwargs"].get("column") else "")
        res = r.get("result") or {}
        lines.append({"expectation": name, "success": r["success"], "unexpected": res.get("unexpected_count", 0)})
        for item in res.get("unexpected_index_list") or []:
            reasons.setdefault(str(item["id"]), []).append(name)
    return lines, reasons


def run(cfg: Config) -> dict:
    manifest = read_parquet(Path(cfg.paths.data) / "pairs" / "manifest.parquet")
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {missing}")
    if manifest.empty:
        raise ValueError("manifest is empty: no pairs to validate")
    table = per_image_table(manifest.reset_index(drop=True))
    result = run_suite(cfg, table)
    lines, reasons = summarise(result, table)
    # Duplicate hashes fail every copy but the first: keep one, quarantine the rest.
    for col in ("schnell_sha256", "dev_sha256"):
        for dup_id in table.loc[table[col].duplicated(), "id"]:
            reasons.setdefault(str(dup_id), []).append(f"duplicate {col}")
    quarantine = pd.DataFrame([{"id": k, "reasons": "; ".join(sorted(set(v)))} for k, v in reasons.items()],
                              columns=["id", "reasons"])
    failed_fraction = len(quarantine) / len(table)
    reports = Path(cfg.paths.reports)
    write_parquet(reports / "quarantine.parquet", quarantine)
    valid = manifest[~manifest["id"].astype(str).isin(quarantine["id"])]
    write_parquet(Path(cfg.paths.data) / "validated.parquet", valid)
    summary = {
        "pairs": len(table), "valid": len(valid), "quarantined": len(quarantine),
        "failed_fraction": failed_fraction, "max_failed_fraction": cfg.validate_.max_failed_fraction,
        "passed": failed_fraction <= cfg.validate_.max_failed_fraction,
        "expectations": lines,
    }
    write_json(reports / "validation.json", summary)
    if not summary["passed"]:
        failing = ", ".join(f"{x['expectation']} x{x['unexpected']}" for x in lines if not x["success"])
        raise ValidationFailed(
            f"validation failed: {len(quarantine)}/{len(table)} pairs quarantined "
            f"(> {cfg.validate_.max_failed_fraction:.0%}); failing expectations: {failing}"
        )
    return {k: v for k, v in summary.items() if k != "expectations"}
