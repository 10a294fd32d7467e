"""The great-expectations suite over the per-pair table: build it, run it in memory, read its result per pair id."""

from __future__ import annotations

import pandas as pd

from facerealism.config import Config
from facerealism.quality.pair_stats import SIDES

REQUIRED_COLUMNS = ["id", "prompt", "seed", "schnell_path", "dev_path", "schnell_sha256", "dev_sha256",
                    "width", "height", "backend"]


def build_suite(cfg: Config, gx, face_checked: bool = False, pair_checked: bool = False) -> list[tuple[object, str]]:
    """The expectations, each with the sentence a person reads in the quarantine; row-level ones feed it.

    Order matters for reading: integrity before decoding before measurements, so one broken file
    shows up first under the check that explains it. The pair relations (haze, washed-out contrast,
    near-copy) come twice: per pair, which quarantines a few bad pairs, and as the median over the set,
    a table-level check that fails the run when the typical pair is bad, whatever max_failed_fraction allows.
    """
    size, v, e = cfg.generate.size, cfg.validate_, gx.expectations
    exps: list[tuple[object, str]] = []
    for col in REQUIRED_COLUMNS:
        if col not in ("width", "height"):
            exps.append((e.ExpectColumnToExist(column=col), f"manifest column {col} is missing"))
    exps += [
        (e.ExpectColumnValuesToBeUnique(column="id"), "pair id appears more than once"),
        (e.ExpectColumnValuesToNotBeNull(column="prompt"), "no prompt"),
        (e.ExpectColumnValueLengthsToBeBetween(column="prompt", min_value=1), "empty prompt"),
        (e.ExpectColumnValuesToNotBeNull(column="seed"), "no seed"),
        (e.ExpectColumnValuesToBeInTypeList(column="seed", type_list=["int64", "int32", "int16", "Int64"]),
         "seed is not an integer column"),
        (e.ExpectColumnValuesToBeInSet(column="pair_complete", value_set=[True]),
         "incomplete pair: schnell and dev images must both exist under the pair's id"),
        (e.ExpectColumnValuesToBeInSet(column="prompt_matches", value_set=[True]),
         "prompt/seed differ from the prompt the id was generated from"),
    ]
    for side in SIDES:
        exps += [
            (e.ExpectColumnValuesToMatchRegex(column=f"{side}_sha256", regex=r"^[0-9a-f]{64}$"),
             "manifest sha256 is not a hex digest"),
            (e.ExpectColumnValuesToBeInSet(column=f"{side}_exists", value_set=[True]), "file missing"),
            (e.ExpectColumnValuesToBeBetween(column=f"{side}_bytes", min_value=1), "empty file (0 bytes)"),
            (e.ExpectColumnValuesToBeInSet(column=f"{side}_sha256_matches", value_set=[True]),
             "file changed since generation (sha256 differs from the manifest)"),
            (e.ExpectColumnValuesToBeInSet(column=f"{side}_decodes", value_set=[True]),
             "does not decode as an image (corrupt or truncated)"),
            (e.ExpectColumnValuesToBeInSet(column=f"{side}_format_matches_extension", value_set=[True]),
             "image format does not match the file extension"),
            (e.ExpectColumnValuesToBeInSet(column=f"{side}_mode", value_set=["RGB"]),
             "not 3-channel RGB (grayscale, RGBA, palette or float)"),
            (e.ExpectColumnValuesToBeBetween(column=f"{side}_width", min_value=size, max_value=size),
             f"width is not generate.size={size}"),
            (e.ExpectColumnValuesToBeBetween(column=f"{side}_height", min_value=size, max_value=size),
             f"height is not generate.size={size}"),
            (e.ExpectColumnValuesToBeInSet(column=f"{side}_finite", value_set=[True]), "NaN/inf pixel values"),
            (e.ExpectColumnValuesToBeBetween(column=f"{side}_brightness", min_value=v.min_brightness,
                                             max_value=v.max_brightness),
             f"mean brightness outside [{v.min_brightness}, {v.max_brightness}] (black or white frame)"),
            (e.ExpectColumnValuesToBeBetween(column=f"{side}_std", min_value=v.min_std, max_value=v.max_std),
             f"contrast (pixel std) outside [{v.min_std}, {v.max_std}] (blank frame or noise)"),
            (e.ExpectColumnValuesToBeBetween(column=f"{side}_sharpness", min_value=v.min_sharpness,
                                             max_value=v.max_sharpness),
             f"sharpness (Laplacian variance) outside [{v.min_sharpness}, {v.max_sharpness}]"),
            (e.ExpectColumnValuesToBeNull(column=f"{side}_duplicate_of"), "byte-identical to an earlier image"),
            (e.ExpectColumnValuesToBeNull(column=f"{side}_near_duplicate_of"),
             f"perceptual near-duplicate (pHash distance <= {v.phash_max_distance}) of an earlier image"),
        ]
        if face_checked:
            exps += [
                (e.ExpectColumnValuesToBeBetween(column=f"{side}_faces", min_value=1, max_value=1),
                 "not exactly one face detected"),
                (e.ExpectColumnValuesToBeInSet(column=f"{side}_face_plausible", value_set=[True]),
                 "face of implausible size or position"),
            ]
    if pair_checked:
        relations = [
            ("pair_sharpness_ratio", v.min_sharpness_ratio, None,
             f"dev is hazy: its high-pass share is below {v.min_sharpness_ratio}x its schnell image's"),
            ("pair_contrast_ratio", v.min_contrast_ratio, None,
             f"dev is washed out: its pixel std is below {v.min_contrast_ratio}x its schnell image's"),
            ("pair_ssim", None, v.max_pair_ssim, f"dev is a near-copy of its schnell image (SSIM > {v.max_pair_ssim})"),
        ]
        if size >= v.detail_correlation_min_size:  # below it, small synthetic pairs share their faces' edges
            relations.append(("pair_detail_correlation", None, v.max_pair_detail_correlation,
                              f"dev is a near-copy of its schnell image: its fine detail is schnell's own "
                              f"(correlation > {v.max_pair_detail_correlation})"))
        for col, lo, hi, sentence in relations:
            exps.append((e.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi), sentence))
        for col, lo, hi, sentence in relations:
            exps.append((e.ExpectColumnMedianToBeBetween(column=col, min_value=lo, max_value=hi),
                         f"set-level, the median pair: {sentence}"))
    return exps


def expectation_name(cfg: dict) -> str:
    col = cfg["kwargs"].get("column")
    return cfg["type"] + (f"({col})" if col else "")


def run_suite(cfg: Config, table: pd.DataFrame, face_checked: bool = False,
              pair_checked: bool = False) -> tuple[dict, dict[str, str]]:
    """Run the suite in an ephemeral GX context (no files, no network).

    Returns:
        (the GX result as a dict, expectation name -> its human sentence).
    """
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    batch_def = ctx.data_sources.add_pandas("pairs").add_dataframe_asset("manifest").add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name="pairs"))
    explain = {}
    for exp, sentence in build_suite(cfg, gx, face_checked, pair_checked):
        suite.add_expectation(exp)
        explain[expectation_name({"type": exp.expectation_type, "kwargs": {"column": getattr(exp, "column", None)}})] = sentence
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="pairs", data=batch_def, suite=suite))
    result = vd.run(batch_parameters={"dataframe": table},
                    result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["id"]})
    return result.to_json_dict(), explain


# Row details a person needs next to the failed check's sentence.
DETAIL_COLUMNS = {"decodes": "decode_error", "format_matches_extension": "decode_error", "faces": "face_issue",
                  "face_plausible": "face_issue", "pair_complete": "pair_issue", "prompt_matches": "pair_issue"}


def summarise(result: dict, table: pd.DataFrame, explain: dict[str, str]) -> tuple[list[dict], dict[str, list[str]]]:
    """Per-expectation lines and, per pair id, a readable reason for each expectation it failed."""
    lines, reasons = [], {}
    by_id = table.drop_duplicates("id").set_index(table["id"].drop_duplicates().astype(str))
    for r in result["results"]:
        name = expectation_name(r["expectation_config"])
        res = r.get("result") or {}
        index_list = res.get("unexpected_index_list")
        observed = res.get("observed_value")
        lines.append({"expectation": name, "success": r["success"], "unexpected": res.get("unexpected_count", 0),
                      "row_level": index_list is not None, "meaning": explain.get(name, ""),
                      "observed": round(observed, 4) if isinstance(observed, float) else None})
        col = r["expectation_config"]["kwargs"].get("column", "")
        side, _, check = col.partition("_") if col.split("_", 1)[0] in SIDES else ("", "", col)
        for item in index_list or []:
            pair_id = str(item["id"])
            reason = f"{name}: {explain.get(name, '')}"
            detail_col = DETAIL_COLUMNS.get(check)
            if detail_col:
                detail = by_id.at[pair_id, f"{side}_{detail_col}" if side else detail_col]
                if isinstance(detail, str) and detail:
                    reason += f" [{detail}]"
            for ref in ("duplicate_of", "near_duplicate_of"):
                if check == ref:
                    reason += f" [{by_id.at[pair_id, col]}]"
            reasons.setdefault(pair_id, []).append(reason)
    return lines, reasons
