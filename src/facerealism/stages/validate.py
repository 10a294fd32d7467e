"""Stage `validate`: a great-expectations suite over the manifest and per-image statistics; quarantine + gate."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from facerealism import catalog, tracking
from facerealism.config import Config
from facerealism.errors import UserError
from facerealism.files import atomic_write_bytes, read_parquet, write_json, write_parquet
from facerealism.progress import progress

REQUIRED_COLUMNS = ["id", "prompt", "seed", "schnell_path", "dev_path", "schnell_sha256", "dev_sha256",
                    "width", "height", "backend"]
SIDES = ("schnell", "dev")
# Which PIL format each extension promises; a JPEG saved as .png is a mislabelled file.
EXTENSION_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


class ValidationFailed(RuntimeError):
    """The failed fraction exceeded validate.max_failed_fraction, or a table-level (schema) expectation failed."""


# Per-image measurements ----------------------------------------------------------------------------------------

def image_stats(path: str | None, phash_size: int = 16) -> dict:
    """Read, hash and decode one image and measure what the suite checks.

    Unmeasurable values stay None: GX skips nulls, so a file that does not decode fails
    `decodes` alone instead of every downstream check.
    """
    out = {"exists": False, "bytes": None, "file_sha256": None, "decodes": None, "decode_error": None,
           "format_matches_extension": None, "mode": None, "width": None, "height": None, "finite": None,
           "brightness": None, "std": None, "sharpness": None, "phash": None}
    if not path or not Path(path).is_file():
        return out
    data = Path(path).read_bytes()
    out.update(exists=True, bytes=len(data), file_sha256=hashlib.sha256(data).hexdigest())
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            fmt, mode, raw = im.format, im.mode, np.asarray(im)
            rgb = im.convert("RGB")
    except Exception as e:  # PIL raises several unrelated types for bad files
        out.update(decodes=False, decode_error=f"{type(e).__name__}: {e}".splitlines()[0][:200])
        return out
    import imagehash
    from scipy import ndimage

    expected = EXTENSION_FORMATS.get(Path(path).suffix.lower())
    grey = np.asarray(rgb.convert("L"), dtype=np.float64)  # (h, w)
    out.update(
        decodes=True, format_matches_extension=(fmt == expected) if expected else False, mode=mode,
        width=rgb.width, height=rgb.height,
        # Float TIFF/EXR-like payloads can carry NaN/inf; uint8 PNGs are always finite.
        finite=bool(np.isfinite(raw).all()) if raw.dtype.kind == "f" else True,
        brightness=float(grey.mean()), std=float(np.asarray(rgb, dtype=np.float64).std()),
        sharpness=float(ndimage.laplace(grey).var()),
        phash=str(imagehash.phash(rgb, hash_size=phash_size)),
    )
    if expected and fmt != expected:
        out["decode_error"] = f"{fmt} data in a {Path(path).suffix} file"
    return out


def first_copy_of(keys: pd.Series, ids: pd.Series) -> pd.Series:
    """For each row, the id of an earlier row with the same key (None for first copies and missing keys)."""
    first: dict = {}
    out = []
    for key, pair_id in zip(keys, ids):
        if key is None or (isinstance(key, float) and np.isnan(key)):
            out.append(None)
        elif key in first:
            out.append(first[key])
        else:
            first[key] = pair_id
            out.append(None)
    return pd.Series(out, index=keys.index, dtype=object)


def near_duplicate_of(hashes: pd.Series, ids: pd.Series, max_distance: int) -> pd.Series:
    """For each row, the id of an earlier row whose perceptual hash is within max_distance bits."""
    out = pd.Series([None] * len(hashes), index=hashes.index, dtype=object)
    valid = [(i, h) for i, h in enumerate(hashes) if isinstance(h, str)]
    if len(valid) < 2:
        return out
    pos = np.array([i for i, _ in valid])
    bits = np.stack([np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8)) for _, h in valid])  # (n, bits)
    # Row by row, not an (n, n, bits) cube: memory stays O(n * bits) for large datasets.
    for k in range(1, len(valid)):
        earlier = np.flatnonzero((bits[:k] != bits[k]).sum(-1) <= max_distance)
        if earlier.size:
            out.iloc[pos[k]] = ids.iloc[pos[earlier[0]]]
    return out


def face_stats(cfg: Config, path: str) -> dict:
    """Faces in one decodable image: count and why it is not one plausible portrait face."""
    from facerealism.faces import single_face_check
    from facerealism.files import load_rgb

    v = cfg.validate_
    count, issue = single_face_check(
        load_rgb(path), detector=v.face_detector, upsample=v.face_upsample, min_score=v.face_min_score,
        min_size=v.face_min_size, max_size=v.face_max_size, margin=v.face_center_margin)
    # Plausibility is only judged on a single face; a count failure already says what is wrong.
    return {"faces": count, "face_plausible": (issue is None) if count == 1 else None, "face_issue": issue}


def pair_checks(row, prompts: pd.DataFrame | None) -> dict:
    """Pair completeness: both images named after the pair id, and the prompt/seed the id was rendered from."""
    issues = []
    for side in SIDES:
        p = getattr(row, f"{side}_path")
        if not isinstance(p, str) or not p:
            issues.append(f"no {side} path")
        elif Path(p).stem != str(row.id):
            issues.append(f"{side} file {Path(p).name} is not named after id {row.id}")
    out = {"pair_complete": not issues, "pair_issue": "; ".join(issues) or None, "prompt_matches": None}
    if prompts is not None:
        src = prompts.get(row.id)
        out["prompt_matches"] = src is not None and src == (row.prompt, int(row.seed))
        if not out["prompt_matches"]:
            out["pair_issue"] = "; ".join(filter(None, [out["pair_issue"], "prompt/seed differ from prompts.parquet"
                                                        if src is not None else "id not in prompts.parquet"]))
    return out


def per_image_table(cfg: Config, manifest: pd.DataFrame, prompts: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per pair: manifest columns plus measured statistics of both images."""
    face_backends = set(cfg.validate_.face_check_backends)
    lookup = None if prompts is None else {r.id: (r.prompt, int(r.seed)) for r in prompts.itertuples()}
    rows = []
    with progress() as bar:
        task = bar.add_task("validate: decode + measure", total=len(manifest))
        for row in manifest.itertuples():
            rec = pair_checks(row, lookup)
            for side in SIDES:
                path = getattr(row, f"{side}_path")
                s = image_stats(path, cfg.validate_.phash_size)
                s["sha256_matches"] = None if s["file_sha256"] is None else s["file_sha256"] == getattr(row, f"{side}_sha256")
                s.update(faces=None, face_plausible=None, face_issue=None)
                if row.backend in face_backends and s["decodes"]:
                    s.update(face_stats(cfg, path))
                rec.update({f"{side}_{k}": v for k, v in s.items()})
            rows.append(rec)
            bar.advance(task)
    stats = pd.DataFrame(rows, index=manifest.index)
    table = pd.concat([manifest.drop(columns=["width", "height"]), stats], axis=1)
    for side in SIDES:
        table[f"{side}_duplicate_of"] = first_copy_of(table[f"{side}_file_sha256"], table["id"])
        table[f"{side}_near_duplicate_of"] = near_duplicate_of(
            table[f"{side}_phash"], table["id"], cfg.validate_.phash_max_distance)
    return table


# The suite ------------------------------------------------------------------------------------------------------

def build_suite(cfg: Config, gx, face_checked: bool = False) -> list[tuple[object, str]]:
    """The expectations, each with the sentence a person reads in the quarantine; row-level ones feed it.

    Order matters for reading: integrity before decoding before measurements, so one broken file
    shows up first under the check that explains it.
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
    return exps


def expectation_name(cfg: dict) -> str:
    col = cfg["kwargs"].get("column")
    return cfg["type"] + (f"({col})" if col else "")


def run_suite(cfg: Config, table: pd.DataFrame, face_checked: bool = False) -> tuple[dict, dict[str, str]]:
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
    for exp, sentence in build_suite(cfg, gx, face_checked):
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
        lines.append({"expectation": name, "success": r["success"], "unexpected": res.get("unexpected_count", 0),
                      "row_level": index_list is not None, "meaning": explain.get(name, "")})
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


# Reports --------------------------------------------------------------------------------------------------------

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


def read_manifest(path: Path) -> pd.DataFrame:
    try:
        return read_parquet(path)
    except FileNotFoundError:
        raise
    except Exception as e:  # pyarrow raises several types for a damaged file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a readable parquet manifest ({first}); rerun `facerealism stage generate`") from None


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
    result, explain = run_suite(cfg, table, face_checked=bool(face_rows.any()))
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
        "expectations": lines,
    }
    # Every report is written before the gate decides, so a failed run still explains itself.
    write_parquet(catalog.QUARANTINE.path(cfg), quarantine)
    write_parquet(catalog.VALIDATED.path(cfg), valid)
    write_json(catalog.VALIDATION_JSON.path(cfg), summary)
    atomic_write_bytes(catalog.VALIDATION_MD.path(cfg), markdown_report(summary, quarantine).encode())
    tracking.log_reports(cfg, "validate", summary, [catalog.VALIDATION_JSON.path(cfg), catalog.VALIDATION_MD.path(cfg)])
    if not summary["passed"]:
        failing = ", ".join(f"{x['expectation']} x{x['unexpected']}" for x in lines if not x["success"])
        raise ValidationFailed(
            f"validation failed (see {catalog.VALIDATION_MD.path(cfg)}): {len(quarantine)}/{total} pairs quarantined "
            f"(> {cfg.validate_.max_failed_fraction:.0%})" + (f", {orphans} orphan images" if orphans else "")
            + f"; failing expectations: {failing or 'none'}"
        )
    return {k: v for k, v in summary.items() if k not in ("expectations", "schema_failures", "face_check_backends")}
