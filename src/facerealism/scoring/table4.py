"""Table 4's layout, in one place: its reference row labels, its optional columns (COLUMNS, each with how it is
computed), how a row flattens into metrics.json (the keys the register gate reads, the photo rules among them) and into
the flat rows a Prefect artifact shows. evaluate builds the table (scoring.rows); gate, preflight, dag and the reports
read it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from facerealism import metrics
from facerealism.config import Config
from facerealism.files import save_png
from facerealism.metrics import fd_dinov2_cmmd as features
from facerealism.scoring import controls
from facerealism.scoring.photo import PHOTO_RULES

SCHNELL, DEV = "FLUX.1-schnell", "FLUX.1-dev"  # the reference rows of FLUX.1 and of its synthetic stand-in


def references(cfg: Config) -> tuple[str, str]:
    """Table 4's reference rows (fast, slow), named after the models that rendered the pairs: FLUX.1's (and the
    synthetic stand-in's) SCHNELL and DEV; a preset's own model names (facerealism.presets); another diffusers pair's
    fast and slow model (its UNet or LoRA where that is what makes it fast), by the last part of its id or path."""
    if cfg.generate.backend != "diffusers":
        return SCHNELL, DEV
    from facerealism import presets

    d = cfg.generate.diffusers
    preset = presets.active(d)
    if preset is not None:
        return preset.models
    fast, slow = _model_name(d.fast_unet or d.fast_lora or d.fast_model), _model_name(d.slow_model)
    return (f"{fast} (fast)", slow) if fast == slow else (fast, slow)


def _model_name(ref: str) -> str:
    """A hub id's, folder's or weights file's last part: "owner/FLUX.2-klein-4B" -> "FLUX.2-klein-4B"."""
    name = PurePosixPath(ref.rstrip("/")).name or ref
    for ext in (".safetensors", ".bin", ".pth", ".pt"):  # a weights file (a UNet, a LoRA): its stem
        name = name.removesuffix(ext)
    return name


def reference_rows(table: dict) -> tuple[str, str]:
    """The (fast, slow) reference rows of a Table 4: table4.json names them under "references" when they are not
    FLUX.1's (so the default's table4.json reads as it always has)."""
    fast, slow = table.get("references", (SCHNELL, DEV))
    return fast, slow


class Context(NamedTuple):
    """What every optional column reads, built once per table by scoring.rows.table4."""

    cfg: Config
    """The resolved config (evaluate section and seed)."""
    schnell: np.ndarray
    """(n, h, w, 3) uint8 test schnell images: the heads' inputs."""
    dev: np.ndarray
    """(n, h, w, 3) uint8 test dev images paired with `schnell`: what every row is compared with."""
    rows: Mapping[str, np.ndarray]
    """Every row's images by label, DEV being `dev` itself (not the dev check sample); read one row at a time."""
    tmp: Path
    """A scratch folder that lives as long as the table is being computed."""


class Column(NamedTuple):
    """One of Table 4's optional columns (FD, C2ST, placement and halo, which the gate reads, are always computed).

    A row holds it under `key` as {"available": True, value keys...} or {"available": False, "reason"}.
    """

    key: str
    """The row's key in table4.json; metrics.json holds KEY.available and KEY.reason (or its values)."""
    headline: str | None
    """The value key the terminal table and the Prefect artifact show; None: never computed offline."""
    cells: tuple[tuple[str, str], ...]
    """(header, value key) of each cell the HTML report shows."""
    flat: tuple[tuple[str, str], ...] | None
    """(value key, metrics.json name under KEY.) of the main head's values; None: not in metrics.json."""
    compute: Callable[[Context, str, np.ndarray, Any], dict]
    """compute(ctx, label, imgs, prepared) -> the row's cell: `imgs` (n, h, w, 3) uint8 are the row's images as
    Table 4 scores them (the dev check sample in the DEV row), `prepared` what `prepare` returned (None without)."""
    prepare: Callable[[Context], Any] | None = None
    """prepare(ctx) -> per-table state, computed once before any row (a column measured on all rows at once)."""


def _same(*keys: str) -> tuple[tuple[str, str], ...]:
    return tuple((k, k) for k in keys)


def _unavailable(reason: str) -> dict:
    return {"available": False, "reason": reason}


def _optional(fn, *args, **kwargs) -> dict:
    """Run an optional column; our own ValueErrors (bad or too-small input) become its reason, not a lost report.

    FD and C2ST are not wrapped: the register gate reads them, so they must fail loudly.
    """
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        return _unavailable(str(e))


NOT_FOR_DEV_CHECK = "not computed for the dev check sample"  # the columns that compare with dev: DEV is dev there


def _against_input(measure: Callable[[Context, np.ndarray], dict]) -> Callable[..., dict]:
    """A column comparing each row's images with their schnell inputs (a head's, a fitted filter's, the oracle's)."""

    def compute(ctx: Context, label: str, imgs: np.ndarray, prepared: None) -> dict:
        if label == SCHNELL:  # the heads' input itself: input -> output comparisons would be trivially perfect
            return _unavailable("not applicable: the schnell row is the input")
        if label == DEV:
            return _unavailable("not applicable: the dev check sample shows other test pairs")
        if controls.is_control(label):  # only what the gate reads: a control is judged like a head there
            return _unavailable("not computed for a control")
        return _optional(measure, ctx, imgs)

    return compute


def _ssim(ctx: Context, imgs: np.ndarray) -> dict:
    return {"available": True, "mean": float(metrics.ssim_pairs(ctx.schnell, imgs).mean())}


def _lpips(ctx: Context, imgs: np.ndarray) -> dict:
    out = metrics.lpips_pairs(ctx.schnell, imgs, ctx.cfg.evaluate.lpips_weights)
    out.pop("per_pair", None)  # the mean is the column; per pair would swamp table4.json
    return out


def _identity(ctx: Context, imgs: np.ndarray) -> dict:
    return metrics.identity_similarity(ctx.schnell, imgs, upsample=ctx.cfg.evaluate.face_upsample)


def _fid_folders(ctx: Context) -> dict[str, Path]:
    """Each row's images as PNG files under ctx.tmp for torch-fidelity; none when the Inception weights are missing."""
    dirs: dict[str, Path] = {}
    if metrics.inception_weights_problem(ctx.cfg.evaluate.inception_weights) is None:
        for i, (label, imgs) in enumerate(ctx.rows.items()):
            dirs[label] = ctx.tmp / f"row{i}"
            for j, img in enumerate(imgs):
                save_png(dirs[label] / f"{j:05d}.png", img)
    return dirs


def _fid_row(weights: str | None, dirs: dict[str, Path], label: str) -> dict:
    problem = metrics.inception_weights_problem(weights)
    if problem:
        return _unavailable(problem)
    out: dict = {"available": True}
    for ref in (SCHNELL, DEV):
        r = metrics.inception_metrics(str(dirs[label]), str(dirs[ref]), weights)
        key = "schnell" if ref == SCHNELL else "dev"
        out[f"fid_{key}"], out[f"kid_{key}"] = r["fid"], r["kid_mean"]
        out["kid_subset_size"] = r["kid_subset_size"]  # lowered to the sample count when there are fewer images
    out["fid_diff"] = out["fid_schnell"] - out["fid_dev"]
    return out


def _fid(ctx: Context, label: str, imgs: np.ndarray, dirs: dict[str, Path]) -> dict:
    if label == DEV:
        return _unavailable(NOT_FOR_DEV_CHECK)
    return _optional(_fid_row, ctx.cfg.evaluate.inception_weights, dirs, label)


def _fd_dinov2_all(ctx: Context) -> dict[str, dict]:
    e = ctx.cfg.evaluate
    return features.fd_dinov2_columns(ctx.rows, SCHNELL, DEV, e.dinov2_weights, n_boot=e.bootstrap, seed=ctx.cfg.seed)


def _cmmd_all(ctx: Context) -> dict[str, dict]:
    return features.cmmd_columns(ctx.rows, SCHNELL, DEV, ctx.cfg.evaluate.clip_model)


def _prepared_row(ctx: Context, label: str, imgs: np.ndarray, prepared: dict[str, dict]) -> dict:
    """A column measured on all rows at once (by its `prepare`): this row's cell. There DEV is the reference itself."""
    return _unavailable(NOT_FOR_DEV_CHECK) if label == DEV else prepared[label]


def _clip_iqa(ctx: Context, label: str, imgs: np.ndarray, prepared: None) -> dict:
    return _unavailable(metrics.NO_OFFLINE_WEIGHTS["clip_iqa"])


# Adding a column: one Column here, with its computation (a weights setting: config/evaluate.py and params.yaml);
# scoring/rows.py (table4) computes every row's cells from this tuple, and metrics.json, the register gate's names,
# the terminal table, the HTML report and the Prefect artifact read it.
COLUMNS = (
    Column("ssim", "mean", (("SSIM", "mean"),), _same("mean"), _against_input(_ssim)),
    Column("lpips", "mean", (("LPIPS", "mean"),), _same("mean"), _against_input(_lpips)),
    Column("identity", "mean_cosine", (("identity (cos)", "mean_cosine"),), _same("mean_cosine"),
           _against_input(_identity)),
    Column("fid", "fid_diff", (("FID_schnell", "fid_schnell"), ("FID_dev", "fid_dev"), ("FID_diff", "fid_diff")),
           (("fid_schnell", "fid_enhanced_schnell"), ("fid_dev", "fid_enhanced_dev"),
            ("kid_schnell", "kid_enhanced_schnell"), ("kid_dev", "kid_enhanced_dev"), ("fid_diff", "fid_diff")),
           _fid, _fid_folders),
    Column("fd_dinov2", "fd_diff", (("FD_diff DINOv2", "fd_diff"),), _same("fd_schnell", "fd_dev", "fd_diff"),
           _prepared_row, _fd_dinov2_all),
    Column("cmmd", "cmmd_diff", (("CMMD_diff", "cmmd_diff"),), _same("cmmd_schnell", "cmmd_dev", "cmmd_diff"),
           _prepared_row, _cmmd_all),
    Column("clip_iqa", None, (), None, _clip_iqa),
)
COLUMN_KEYS = tuple(col.key for col in COLUMNS)


def flat_metrics(table: dict, head_label: str) -> dict:
    """metrics.json: the main head's row under the flat keys the register gate and DVC read."""
    rows = table["rows"]
    head, ref = rows[head_label], rows[reference_rows(table)[0]]
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
    for col in COLUMNS:
        if col.flat is None:  # never computed offline: table4.json says why, metrics.json leaves it out
            continue
        c = head[col.key]
        flat[f"{col.key}.available"] = c["available"]
        if c["available"]:
            flat.update({f"{col.key}.{name}": c[key] for key, name in col.flat})
        else:
            flat[f"{col.key}.reason"] = c["reason"]
    return flat


# Keys run() adds to metrics.json beside flat_metrics' own.
RUN_KEYS = ("holdout_pairs", "best_head", *(f"photo.{rule.key}" for rule in PHOTO_RULES),
            "fitted.best", "fitted.scored", "c2st.dev_vs_fitted", "c2st.dev_vs_fitted_ci_low",
            "c2st.dev_vs_fitted_ci_high")
OPTIONAL_COLUMNS = tuple(col.key for col in COLUMNS if col.flat is not None)  # those metrics.json holds


def metric_names(cfg: Config) -> set[str]:
    """Every key metrics.json can hold under this config (an optional column's value keys included, as if it were
    available): the names the register gate may read. Built by flat_metrics itself on a table of this shape."""
    fd = {"fd_schnell": 0.0, "fd_dev": 0.0, "fd_diff": 0.0, **({"fd_diff_ci": [0.0, 0.0]} if cfg.evaluate.bootstrap else {})}
    available = {"available": True, **{key: 0.0 for col in COLUMNS for key, _ in col.flat or ()}}
    runs = {"runs": [0.5], "worst": 0.5, "best": 0.5, "worst_ci_high": 0.5}
    row = {"fd": {space: fd for space in cfg.evaluate.spaces}, "c2st_vs_dev": 0.5, "c2st_ci": [0.5, 0.5],
           "c2st_auc": 0.5, "c2st_runs": runs, "placement": {"gain": 0.0, "ci": [0.0, 0.0], "share": 0.0, "n": 1}, "halo_vs_dev": 1.0,
           **{col: available for col in OPTIONAL_COLUMNS}}
    names = set(flat_metrics({"rows": {SCHNELL: row, "head": row}}, "head"))
    return names | set(RUN_KEYS) | {f"{col}.reason" for col in OPTIONAL_COLUMNS}


def table4_rows(table: dict) -> list[dict]:
    """Table 4 (reports/table4.json) as flat rows: FD and FD_diff per space, C2ST and its spread, placement gain,
    halo over dev's, each optional column's headline value; "n/a" where unavailable."""
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
        for col in COLUMNS:
            cell = row.get(col.key)
            if isinstance(cell, dict):
                available = cell.get("available") and col.headline in cell
                flat[col.key] = round(float(cell[col.headline]), 4) if available else "n/a"
        rows.append(flat)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k, "") for k in keys} for r in rows]
