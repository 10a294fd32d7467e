"""Table 4's layout, in one place: its reference row labels, its optional columns (COLUMNS, each with how it is
computed), how a row flattens into metrics.json (the keys the register gate reads, the photo rules among them) and into
the flat rows a Prefect artifact shows. evaluate builds the table (scoring.rows); gate, preflight, dag and the reports
read it."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from facerealism import metrics
from facerealism.config import Config
from facerealism.files import save_png
from facerealism.metrics import fd_dinov2_cmmd as features
from facerealism.metrics.pretrained import WeightsUnavailable, lpips_backbone
from facerealism.scoring import controls
from facerealism.scoring.shards import Measure, Pair
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


DEV_REF = "dev (reference)"  # the dev images every row is compared with (the scored half's); not a row of its own


class Context(NamedTuple):
    """What every optional column reads, built once per table by scoring.rows.table4 (sent to the shards' workers)."""

    cfg: Config
    """The resolved config (evaluate section and seed)."""
    size: tuple[int, int]
    """(h, w) of the test images."""
    tmp: Path
    """A scratch folder that lives as long as the table is being computed (on a shared disk, like the images)."""


class Column(NamedTuple):
    """One of Table 4's optional columns (FD, C2ST, placement and halo, which the gate reads, are always computed).

    A row holds it under `key` as {"available": True, value keys...} or {"available": False, "reason"}. Its images
    are never all in memory: `prepare` names what to measure on each shard of a row (scoring.shards.Measure, run on
    the shards' workers), and `compute` makes each row's cell from what was measured on every row.
    """

    key: str
    """The row's key in table4.json; metrics.json holds KEY.available and KEY.reason (or its values)."""
    headline: str | None
    """The value key the terminal table and the Prefect artifact show; None: never computed offline."""
    cells: tuple[tuple[str, str], ...]
    """(header, value key) of each cell the HTML report shows."""
    flat: tuple[tuple[str, str], ...] | None
    """(value key, metrics.json name under KEY.) of the main head's values; None: not in metrics.json."""
    compute: Callable[[Context, str, Any], dict]
    """compute(ctx, label, measured) -> the row's cell. `measured`: what `prepare` returned if it is not a Measure
    (a reason, or None), else {label: that Measure's result over the row's images} for every row `measures` picks.
    Labels are scoring.rows': SCHNELL, DEV (the dev check sample), DEV_REF (the reference dev images), the rest."""
    prepare: Callable[[Context], Any] = lambda ctx: None
    """prepare(ctx) -> the shards.Measure this column runs on each row, or why it cannot run (str), or None."""
    measures: Callable[[str], bool] = lambda label: label != DEV
    """Which rows (scoring.rows' labels) the Measure runs on."""


def _same(*keys: str) -> tuple[tuple[str, str], ...]:
    return tuple((k, k) for k in keys)


def _unavailable(reason: str) -> dict:
    return {"available": False, "reason": reason}


NOT_FOR_DEV_CHECK = "not computed for the dev check sample"  # columns measured against dev (DEV_REF) skip DEV


def _is_candidate(label: str) -> bool:
    """A row whose images are made from its schnell inputs and compared with them: a head, a fitted filter, the
    oracle (schnell is the input itself; the dev rows show other images; a control is judged only by the gate)."""
    return label not in (SCHNELL, DEV, DEV_REF) and not controls.is_control(label)


def _against_input(summary: Callable[[Context, np.ndarray], dict]) -> Callable[..., dict]:
    """A column comparing each row's images with their schnell inputs: its cell from the row's per-pair values."""

    def compute(ctx: Context, label: str, measured) -> dict:
        if label == SCHNELL:  # the heads' input itself: input -> output comparisons would be trivially perfect
            return _unavailable("not applicable: the schnell row is the input")
        if label == DEV:
            return _unavailable("not applicable: the dev check sample shows other test pairs")
        if controls.is_control(label):  # only what the gate reads: a control is judged like a head there
            return _unavailable("not computed for a control")
        return _unavailable(measured) if isinstance(measured, str) else summary(ctx, measured[label])

    return compute


def _too_small_for_ssim(ctx: Context):
    if min(ctx.size) < 7:
        return f"SSIM's 7x7 window needs images of at least 7x7 pixels, got {ctx.size}"
    return Measure(_ssim_pairs, inputs=True)


def _ssim_pairs(pair: Pair) -> np.ndarray:
    return metrics.ssim_pairs(pair.inputs, pair.images)


def _lpips_measure(ctx: Context):
    try:
        path = lpips_backbone("alex", ctx.cfg.evaluate.lpips_weights)
        _lpips_model(path)  # a wrong file is this column's reason here, not a failed shard
    except (WeightsUnavailable, ValueError) as e:
        return str(e)
    return Measure(functools.partial(_lpips_pairs, path), inputs=True)


@functools.lru_cache(maxsize=2)
def _lpips_model(path: str):
    return metrics.load_lpips("alex", path, "evaluate.lpips_weights")


def _lpips_pairs(path: str, pair: Pair) -> np.ndarray:
    return metrics.lpips_per_pair(_lpips_model(path), pair.inputs, pair.images)


def _identity_pairs(upsample: int, pair: Pair) -> np.ndarray:
    return metrics.identity_pairs(pair.inputs, pair.images, upsample)


def _fid_folder(ctx: Context, label: str) -> Path:
    """Where a row's images are written as PNG files for torch-fidelity (one folder per row, named by its label)."""
    return ctx.tmp / f"fid-{hashlib.sha1(label.encode()).hexdigest()[:12]}"


def _fid_prepare(ctx: Context):
    problem = metrics.inception_weights_problem(ctx.cfg.evaluate.inception_weights)
    return problem or Measure(functools.partial(_write_pngs, ctx))


def _write_pngs(ctx: Context, pair: Pair) -> np.ndarray:
    folder = _fid_folder(ctx, pair.label)
    for j, img in enumerate(pair.images):
        save_png(folder / f"{pair.lo + j:06d}.png", img)
    return np.zeros((len(pair.images), 0))


def _against_dev(cell: Callable[[Context, str, dict], dict]) -> Callable[..., dict]:
    """A column measured on every row and compared with schnell's and the reference dev images' measurements (DEV_REF):
    the dev check sample is left out, and a column that could not run gives its reason in every row."""

    def compute(ctx: Context, label: str, measured) -> dict:
        if label == DEV:
            return _unavailable(NOT_FOR_DEV_CHECK)
        return _unavailable(measured) if isinstance(measured, str) else cell(ctx, label, measured)

    return compute


def _fid(ctx: Context, label: str, measured: dict) -> dict:
    try:
        weights = ctx.cfg.evaluate.inception_weights
        out: dict = {"available": True}
        for ref in (SCHNELL, DEV_REF):
            r = metrics.inception_metrics(str(_fid_folder(ctx, label)), str(_fid_folder(ctx, ref)), weights)
            key = "schnell" if ref == SCHNELL else "dev"
            out[f"fid_{key}"], out[f"kid_{key}"] = r["fid"], r["kid_mean"]
            out["kid_subset_size"] = r["kid_subset_size"]  # lowered to the sample count when there are fewer images
        out["fid_diff"] = out["fid_schnell"] - out["fid_dev"]
        return out
    except ValueError as e:  # too few images and the like: the column's reason, not a lost report
        return _unavailable(str(e))


def _pretrained(load: Callable[[str | None], Any], measure: Callable[[str | None, Pair], np.ndarray], setting: str):
    """prepare() of a column on a pretrained model: its Measure, or why the model cannot load (`setting`: its key
    under evaluate, the configured weights)."""

    def prepare(ctx: Context):
        configured = getattr(ctx.cfg.evaluate, setting)
        try:
            load(configured)  # once here, so a missing model is the column's reason, not a failed shard
        except WeightsUnavailable as e:
            return str(e)
        return Measure(functools.partial(measure, configured))

    return prepare


def _dinov2_features(configured: str | None, pair: Pair) -> np.ndarray:
    return features.dinov2_features(pair.images, features.dinov2_model(configured))


def _fd_dinov2(ctx: Context, label: str, measured: dict) -> dict:
    e = ctx.cfg.evaluate
    return {"available": True, **metrics.fd_row(measured[label], measured[SCHNELL], measured[DEV_REF],
                                                n_boot=e.bootstrap, seed=ctx.cfg.seed, paired=True)}


def _clip_embeddings(configured: str | None, pair: Pair) -> np.ndarray:
    return features.clip_embeddings(pair.images, *features.clip_model(configured))


def _cmmd(ctx: Context, label: str, measured: dict) -> dict:
    s, d = (features.cmmd(measured[label], measured[ref]) for ref in (SCHNELL, DEV_REF))
    return {"available": True, "cmmd_schnell": s, "cmmd_dev": d, "cmmd_diff": s - d}


def _clip_iqa(ctx: Context, label: str, measured: None) -> dict:
    return _unavailable(metrics.NO_OFFLINE_WEIGHTS["clip_iqa"])


# Adding a column: one Column here, with its computation (a weights setting: config/evaluate.py and params.yaml);
# scoring/rows.py (table4) measures and computes every row's cells from this tuple, and metrics.json, the register
# gate's names, the terminal table, the HTML report and the Prefect artifact read it.
COLUMNS = (
    Column("ssim", "mean", (("SSIM", "mean"),), _same("mean"),
           _against_input(lambda ctx, v: {"available": True, "mean": float(v.mean())}), _too_small_for_ssim,
           _is_candidate),
    Column("lpips", "mean", (("LPIPS", "mean"),), _same("mean"),
           _against_input(lambda ctx, v: {"available": True, "mean": float(v.mean())}), _lpips_measure, _is_candidate),
    Column("identity", "mean_cosine", (("identity (cos)", "mean_cosine"),), _same("mean_cosine"),
           _against_input(lambda ctx, v: metrics.identity_summary(v, ctx.size)),
           lambda ctx: Measure(functools.partial(_identity_pairs, ctx.cfg.evaluate.face_upsample), inputs=True),
           _is_candidate),
    Column("fid", "fid_diff", (("FID_schnell", "fid_schnell"), ("FID_dev", "fid_dev"), ("FID_diff", "fid_diff")),
           (("fid_schnell", "fid_enhanced_schnell"), ("fid_dev", "fid_enhanced_dev"),
            ("kid_schnell", "kid_enhanced_schnell"), ("kid_dev", "kid_enhanced_dev"), ("fid_diff", "fid_diff")),
           _against_dev(_fid), _fid_prepare),
    Column("fd_dinov2", "fd_diff", (("FD_diff DINOv2", "fd_diff"),), _same("fd_schnell", "fd_dev", "fd_diff"),
           _against_dev(_fd_dinov2), _pretrained(features.dinov2_model, _dinov2_features, "dinov2_weights")),
    Column("cmmd", "cmmd_diff", (("CMMD_diff", "cmmd_diff"),), _same("cmmd_schnell", "cmmd_dev", "cmmd_diff"),
           _against_dev(_cmmd), _pretrained(features.clip_model, _clip_embeddings, "clip_model")),
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
