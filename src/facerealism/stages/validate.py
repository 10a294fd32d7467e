"""Stage `validate`: a great-expectations suite over the manifest and per-image statistics; quarantine + gate."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from facerealism.config import Config
from facerealism.data import catalog
from facerealism.errors import UserError, ValidationFailed
from facerealism.files import atomic_write_bytes, read_parquet, write_json, write_parquet
from facerealism.mlops import tracking
from facerealism.quality.expectations import REQUIRED_COLUMNS, run_suite, summarise
from facerealism.quality.pair_stats import PAIR_MEASURES, SIDES, per_image_table


def run(cfg: Config) -> dict:
    manifest = read_manifest(catalog.PAIRS.path(cfg) / catalog.PAIRS_MANIFEST)
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise UserError(f"manifest lacks column(s) {missing}")
    if manifest.empty:
        raise UserError("manifest is empty: no pairs to validate")
    prompts_path = catalog.PROMPTS.path(cfg)
    prompts = read_parquet(prompts_path) if prompts_path.exists() else None
    manifest = manifest.reset_index(drop=True)
    table = per_image_table(cfg, manifest, prompts)
    face_rows = manifest["backend"].isin(cfg.validate_.face_check_backends)
    pair_rows = table["pair_ssim"].notna()
    result, explain = run_suite(cfg, table, face_checked=bool(face_rows.any()), pair_checked=bool(pair_rows.any()))
    lines, reasons = summarise(result, table, explain)
    first_row = manifest.drop_duplicates("id").set_index(manifest["id"].drop_duplicates().astype(str))
    quarantine = pd.DataFrame(
        [{"id": k, "reasons": "; ".join(dict.fromkeys(v)), "backend": first_row.at[k, "backend"],
          "schnell_path": first_row.at[k, "schnell_path"], "dev_path": first_row.at[k, "dev_path"]}
         for k, v in reasons.items()] + orphan_files(cfg, manifest),
        columns=["id", "reasons", "backend", "schnell_path", "dev_path"])
    orphans = int(quarantine["reasons"].str.startswith("orphan:").sum())
    total = len(table) + orphans
    failed_fraction = len(quarantine) / total
    # Table-level failures (e.g. a column of the wrong type) have no rows to quarantine: they fail the gate.
    schema_failures = [x["expectation"] for x in lines if not x["success"] and not x["row_level"]]
    valid = manifest[~manifest["id"].astype(str).isin(quarantine["id"])]
    summary = {
        "pairs": total, "valid": len(valid), "quarantined": len(quarantine), "orphans": orphans,
        "failed_fraction": failed_fraction, "max_failed_fraction": cfg.validate_.max_failed_fraction,
        "passed": failed_fraction <= cfg.validate_.max_failed_fraction and not schema_failures,
        "schema_failures": schema_failures, "face_check_backends": cfg.validate_.face_check_backends,
        "face_detector": cfg.validate_.face_detector, "face_checked_pairs": int(face_rows.sum()),
        "pair_checked_pairs": int(pair_rows.sum()), "pair_relations": relation_summary(table),
        "expectations": lines,
    }
    # Every report is written before the gate decides, so a failed run still explains itself.
    write_parquet(catalog.QUARANTINE.path(cfg), quarantine)
    write_parquet(catalog.VALIDATED.path(cfg), valid)
    write_json(catalog.VALIDATION_JSON.path(cfg), summary)
    atomic_write_bytes(catalog.VALIDATION_MD.path(cfg), markdown_report(summary, quarantine).encode())
    tracking.log_reports(cfg, "validate", summary, [catalog.VALIDATION_JSON.path(cfg), catalog.VALIDATION_MD.path(cfg)])
    if not summary["passed"]:
        failing = ", ".join(f"{x['expectation']} " + (f"x{x['unexpected']}" if x["row_level"] else f"= {x['observed']}")
                            for x in lines if not x["success"])
        raise ValidationFailed(
            f"validation failed (see {catalog.VALIDATION_MD.path(cfg)}): {len(quarantine)}/{total} pairs quarantined "
            f"(> {cfg.validate_.max_failed_fraction:.0%})" + (f", {orphans} orphan images" if orphans else "")
            + f"; failing expectations: {failing or 'none'}"
        )
    return {k: v for k, v in summary.items()
            if k not in ("expectations", "schema_failures", "face_check_backends", "pair_relations")}


def relation_summary(table: pd.DataFrame) -> dict:
    """min / median / max of each dev-vs-schnell measure over the pairs it was measured on (the measured spread)."""
    out = {}
    for col in PAIR_MEASURES:
        x = pd.to_numeric(table[col], errors="coerce").dropna()
        out[col] = {"n": len(x), **({k: round(float(getattr(x, k)()), 4) for k in ("min", "median", "max")}
                                    if len(x) else dict.fromkeys(("min", "median", "max")))}
    return out


def read_manifest(path: Path) -> pd.DataFrame:
    try:
        return read_parquet(path)
    except FileNotFoundError:
        raise
    except Exception as e:  # pyarrow raises several types for a damaged file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a readable parquet manifest ({first}); rerun `facerealism stage generate`") from None


def orphan_files(cfg: Config, manifest: pd.DataFrame) -> list[dict]:
    """Images on disk whose partner is missing and that no manifest row lists (a generation that died mid-pair)."""
    pairs = catalog.PAIRS.path(cfg)
    listed = set(manifest["id"].astype(str))
    stems = {side: {p.stem: p for p in (pairs / side).glob("*.png")} for side in SIDES}
    out = []
    for side, other in (("schnell", "dev"), ("dev", "schnell")):
        for stem, p in sorted(stems[side].items()):
            if stem not in listed and stem not in stems[other]:
                out.append({"id": stem, "reasons": f"orphan: {side} image {p} has no {other} partner and no manifest row",
                            "backend": None, "schnell_path": str(p) if side == "schnell" else None,
                            "dev_path": str(p) if side == "dev" else None})
    return out


def markdown_report(summary: dict, quarantine: pd.DataFrame, max_rows: int = 200) -> str:
    """reports/validation.md: the same facts as validation.json, for people."""
    verdict = "PASSED" if summary["passed"] else "FAILED"
    out = [
        "# Data validation", "",
        f"**{verdict}**: {summary['quarantined']}/{summary['pairs']} pairs quarantined "
        f"({summary['failed_fraction']:.1%}; the gate allows {summary['max_failed_fraction']:.1%}).", "",
        f"- valid pairs written to data/validated.parquet: {summary['valid']}",
        f"- orphan images (no partner, no manifest row): {summary['orphans']}",
        f"- face checks (dlib {summary['face_detector']}) for backends {summary['face_check_backends']}: "
        f"{'applied to ' + str(summary['face_checked_pairs']) + ' pairs' if summary['face_checked_pairs'] else 'not applicable to these backends'}",
        f"- dev vs its own schnell image (haze, contrast, near-copy) for {summary['pair_checked_pairs']} pairs: "
        + ", ".join(f"{k.removeprefix('pair_')} {v['min']}-{v['max']} (median {v['median']})"
                    for k, v in summary["pair_relations"].items() if v["n"]),
        "- nothing is deleted: failing pairs are listed in reports/quarantine.parquet", "",
        "## Expectations", "", "| expectation | result | unexpected | meaning |", "|---|---|---:|---|",
    ]
    for x in summary["expectations"]:
        out.append(f"| `{x['expectation']}` | {'ok' if x['success'] else '**FAIL**'} | {x['unexpected']} | {x['meaning']} |")
    out += ["", "## Quarantine", ""]
    if quarantine.empty:
        out.append("Empty.")
    else:
        out += ["| id | backend | reasons |", "|---|---|---|"]
        for r in quarantine.head(max_rows).itertuples():
            out.append(f"| {r.id} | {r.backend or ''} | {str(r.reasons).replace('|', '/')} |")
        if len(quarantine) > max_rows:
            out.append(f"\n... and {len(quarantine) - max_rows} more rows in reports/quarantine.parquet")
    return "\n".join(out) + "\n"
