"""Stage `evaluate`: the paper's Table 4 on the test split — schnell, dev, each trained head and fitted baseline."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from facerealism import metrics
from facerealism.config import Config
from facerealism.config.architectures import head_recipe
from facerealism.data import catalog
from facerealism.data.split import dev_check_half, load_images, train_holdout
from facerealism.errors import UserError
from facerealism.files import read_json, save_png, write_json
from facerealism.head import enhance_array, load_head
from facerealism.metrics import fd_dinov2_cmmd as features
from facerealism.mlops import tracking
from facerealism.report.grids import save_grid
from facerealism.report.progress import progress
from facerealism.scoring import controls, fitted
from facerealism.scoring.fitted_rows import fitted_filters, fitted_metrics
from facerealism.scoring.photo import PHOTO_RULES, meets_photo_rules, photo_check, photo_limits
from facerealism.scoring.table4 import (COLUMN_KEYS, COLUMNS, DEV, SCHNELL, flat_metrics, reference_rows,
                                        references)


def run(cfg: Config) -> dict:
    from rich.console import Console

    from facerealism.report import html as report

    schnell, dev, dev_check, schnell_check = holdout_sets(cfg)
    k = min(cfg.evaluate.grid_n, len(schnell))
    # Each row is a recipe for its images (Row), made again whenever Table 4 reads it and never kept: evaluate holds
    # the test split's inputs and one row's outputs at a time, not every row's.
    outputs: dict[str, Row] = {}
    outputs_check: dict[str, Row] = {}  # the same rows on the check half: the swapped halves' C2ST scores these
    previews, head_label, run_id = {}, None, None
    for label, folder in head_dirs(cfg):
        G, meta = load_head(folder)
        label = label or head_recipe(meta).label  # what was trained, by name: not just the architecture
        if label in outputs:
            raise UserError(f"two heads share the Table 4 label {label!r}; rename it in evaluate.extra_heads")
        outputs[label] = functools.partial(enhance_array, G, schnell)
        outputs_check[label] = functools.partial(enhance_array, G, schnell_check)
        previews[label] = enhance_array(G, schnell[:k])
        if head_label is None:  # the first is models/head: its run and the gate's metrics
            head_label, run_id = label, meta.get("mlflow_run_id")
    filters, fitted_params = fitted_filters(cfg, schnell.shape[1])  # closed form: seconds to a minute
    for label, f in filters.items():
        outputs[label], outputs_check[label] = functools.partial(f, schnell), functools.partial(f, schnell_check)
    for name in cfg.evaluate.controls:
        outputs[controls.label(name)] = functools.partial(controls.apply, name, schnell, cfg.seed, dev)
        outputs_check[controls.label(name)] = functools.partial(controls.apply, name, schnell_check, cfg.seed,
                                                                dev_check)
    outputs[controls.ORACLE] = functools.partial(controls.oracle, schnell, dev)
    outputs_check[controls.ORACLE] = functools.partial(controls.oracle, schnell_check, dev_check)
    table = table4(cfg, schnell, dev, dev_check, outputs, schnell_check=schnell_check, outputs_check=outputs_check)
    table["head_label"] = head_label
    table["fitted"] = fitted_params
    reports = Path(cfg.paths.reports)
    G = load_head(head_dirs(cfg)[0][1])[0]
    table["photo"] = photo_check(lambda x: enhance_array(G, x), schnell.shape[1], reports)
    limits = photo_limits(cfg)
    for label, params in fitted_params.items():  # fitted rows get the photo check too: they could be shipped
        row = table["rows"][label]
        row["photo"] = photo_check(fitted.rebuild(fitted.name_of(label), params), schnell.shape[1])
        row["photo_passes"] = meets_photo_rules(row["photo"], limits)
    space = cfg.evaluate.spaces[0]
    table["ranking"] = {"by": f"fd_diff.{space}", "heads": ranking(table, space)}
    flat = flat_metrics(table, head_label)
    flat["holdout_pairs"] = len(schnell)
    flat["best_head"] = table["ranking"]["heads"][0]["head"]
    flat.update({f"photo.{rule.key}": table["photo"][rule.key] for rule in PHOTO_RULES})
    flat.update(fitted_metrics(table))
    write_json(catalog.METRICS.path(cfg), flat)
    write_json(catalog.TABLE4.path(cfg), table)
    grid = save_grid(catalog.BEFORE_AFTER.path(cfg), [schnell[:k], *previews.values(), dev[:k]],
                     ["schnell", *previews, "dev"], scale=4)
    crops = report.save_crops(catalog.CROPS.path(cfg), {"schnell": schnell[:k], **previews, "dev": dev[:k]})
    html = report.write_report(reports)

    console = Console()
    for t in rich_table4(table):
        console.print(t)
    for col, reason in unavailable_reasons(table).items():
        console.print(f"[dim]{col}: unavailable — {reason}[/]", highlight=False)
    if len(previews) > 1:
        console.print(f"best head by {table['ranking']['by']} on the held-out split: [bold]{flat['best_head']}[/]")

    with tracking.run(cfg, "evaluate", run_id=run_id):
        tracking.log_metrics({f"eval.{k}": v for k, v in flat.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)})
        tracking.set_tags({"eval.best_head": flat["best_head"]})  # a tag: a re-evaluation may change it
        for path in (grid, crops, catalog.PHOTO.path(cfg), catalog.METRICS.path(cfg), catalog.TABLE4.path(cfg), html):
            tracking.log_artifact(path, "evaluate")
    return {k: v for k, v in flat.items() if k.startswith(("fd_diff.", "c2st", "fid.available"))}


def holdout_sets(cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(schnell, dev, dev_check, schnell_check) uint8 images of the test split, halved by hashed id.

    The candidates' pairs (schnell, dev) are one half; the other half's dev images are the dev check's independent
    sample, scored against the first half's dev like a candidate (dev judged against itself could never fail).
    Its schnell images are what the placement C2ST sets its dev images beside, and the inputs a candidate is
    scored on when the halves swap roles (the C2ST's spread).
    """
    _, holdout = train_holdout(cfg)
    check = dev_check_half(holdout["id"])
    scored, sample = holdout[~check], holdout[check]
    if len(scored) < 2 or len(sample) < 2:
        raise UserError(f"the test split's halves have {len(scored)} and {len(sample)} pairs; need at least 2 each "
                         f"(raise prompts.n_enriched or split.holdout_fraction)")
    return (load_images(scored["schnell_path"]), load_images(scored["dev_path"]), load_images(sample["dev_path"]),
            load_images(sample["schnell_path"]))


def head_dirs(cfg: Config) -> list[tuple[str | None, Path]]:
    """(Table 4 label, head folder): models/head, the baselines the train stage trained beside it (both labelled
    by the recipe their head.json records: None), then evaluate.extra_heads."""
    heads: list[tuple[str | None, Path]] = [(None, catalog.HEAD.path(cfg))]
    trained = catalog.BASELINES.path(cfg) / catalog.BASELINES_JSON
    if trained.exists():
        heads += [(None, trained.parent / name / catalog.HEAD.name) for name in read_json(trained)["baselines"]]
    for label, folder in cfg.evaluate.extra_heads.items():
        if label in (SCHNELL, DEV, *references(cfg)):
            raise UserError(f"evaluate.extra_heads: label {label!r} is reserved for a reference row")
        heads.append((label, Path(folder)))
    return heads


def head_labels(table: dict) -> list[str]:
    """The rows that are trained heads (not the references, not the controls), in table order."""
    return [label for label in table["order"] if label not in (*reference_rows(table), controls.ORACLE)
            and not controls.is_control(label) and not fitted.is_fitted(label)]


def ranking(table: dict, space: str) -> list[dict]:
    """The heads, best first by FD_diff in `space` (higher: nearer dev); what "which head is better" means here."""
    heads = head_labels(table)
    rows = [{"head": label, **{f"fd_diff.{s}": r["fd_diff"] for s, r in table["rows"][label]["fd"].items()},
             "c2st_vs_dev": table["rows"][label]["c2st_vs_dev"]} for label in heads]
    return sorted(rows, key=lambda r: -r[f"fd_diff.{space}"])


def _optional(fn, *args, **kwargs) -> dict:
    """Run an optional column; our own ValueErrors (bad or too-small input) become its reason, not a lost report.

    FD and C2ST are not wrapped: the register gate reads them, so they must fail loudly.
    """
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        return {"available": False, "reason": str(e)}


def _fid_columns(weights: str | None, dirs: dict[str, Path], label: str) -> dict:
    problem = metrics.inception_weights_problem(weights)
    if problem:
        return {"available": False, "reason": problem}
    out: dict = {"available": True}
    for ref in (SCHNELL, DEV):
        r = metrics.inception_metrics(str(dirs[label]), str(dirs[ref]), weights)
        key = "schnell" if ref == SCHNELL else "dev"
        out[f"fid_{key}"], out[f"kid_{key}"] = r["fid"], r["kid_mean"]
        out["kid_subset_size"] = r["kid_subset_size"]  # lowered to the sample count when there are fewer images
    out["fid_diff"] = out["fid_schnell"] - out["fid_dev"]
    return out


DEV_REF = "dev (reference)"  # the dev images every row is compared with; not a row of its own

Row = np.ndarray | Callable[[], np.ndarray]
"""A Table 4 row's images (n, h, w, 3) uint8, or a callable that makes them (made again on every read, never kept)."""


class Rows(Mapping):
    """Table 4's rows by label; reading one gives its images, made by its callable if it is one.

    Each made row is checked against the inputs' shape (the dev check sample, DEV, only for the image size) and
    dropped by the reader after use, so a pass over the rows holds one row's images at a time.
    """

    def __init__(self, rows: dict[str, Row], shape: tuple[int, ...]):
        self.rows, self.shape = rows, shape

    def __getitem__(self, label: str) -> np.ndarray:
        row = self.rows[label]
        imgs = row() if callable(row) else row
        if imgs.shape[1:] != self.shape[1:] or (label != DEV and imgs.shape != self.shape):
            raise UserError(f"Table 4 row {label!r} has images {imgs.shape}, expected {self.shape} like schnell")
        return imgs

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)



def table4(cfg: Config, schnell: np.ndarray, dev: np.ndarray, dev_check: np.ndarray,
           outputs: dict[str, Row], *, schnell_check: np.ndarray | None = None,
           outputs_check: dict[str, Row] | None = None) -> dict:
    """Every Table 4 column for the reference rows (schnell, dev) and each head's outputs.

    Args:
        cfg: the resolved config (evaluate section and seed).
        schnell: (n, h, w, 3) uint8 test schnell images, the heads' inputs.
        dev: (n, h, w, 3) uint8 test dev images, paired with schnell: what every row is compared with.
        dev_check: (m, h, w, 3) uint8 dev images of other test pairs: the FLUX.1-dev row, an independent sample
            scored against `dev` (unpaired) like a candidate, so the "dev passes the gate" check can fail.
        outputs: head label -> (n, h, w, 3) uint8 outputs on `schnell`, or a callable making them (a Row: made
            on each read, one row at a time, so the rows' images are never all in memory).
        schnell_check: (m, h, w, 3) schnell twins of `dev_check`: the dev check's placement and halo columns are
            measured against them; None leaves those two of its columns unavailable (so it fails the gate).
        outputs_check: head label -> outputs on `schnell_check`: with them every C2ST is repeated with the halves'
            roles swapped (scored on the check half, against its dev images), besides over `c2st_seeds` fold seeds.

    Returns:
        {"rows": {label: {"fd": {space: {...}}, "c2st_vs_dev", "ssim", "lpips", "identity", "fid", "fd_dinov2",
        "cmmd", "clip_iqa"}}, "n_images", "notes"}; a column that cannot be computed holds {"available": False, "reason"}.
    """
    e = cfg.evaluate
    check_rows(schnell, dev, dev_check)
    rows = Rows({SCHNELL: schnell, DEV: dev_check, **outputs}, schnell.shape)
    feats = feature_sets(cfg, dev, rows)
    halves = c2st_halves(cfg, feats, dev, dev_check, schnell_check, outputs_check)
    halo_ref = metrics.edge_halo(schnell, dev)  # dev's own overshoot over these inputs: what a halo is measured against
    refs = Rows({SCHNELL: schnell, DEV: dev, **outputs}, schnell.shape)  # the optional columns compare with dev
    dinov2 = features.fd_dinov2_columns(refs, SCHNELL, DEV, e.dinov2_weights, n_boot=e.bootstrap, seed=cfg.seed)
    cmmd = features.cmmd_columns(refs, SCHNELL, DEV, e.clip_model)
    for column in (dinov2, cmmd):  # there, "FLUX.1-dev" is the reference itself, not the dev check sample
        column[DEV] = {"available": False, "reason": "not computed for the dev check sample"}
    table: dict = {}
    with tempfile.TemporaryDirectory() as tmp, progress() as bar:
        dirs = fid_folders(cfg, Rows({SCHNELL: schnell, DEV: dev, **outputs}, schnell.shape), Path(tmp))
        task = bar.add_task("evaluate: Table 4 rows (bootstrap, C2ST)", total=len(rows))
        for label, imgs in rows.items():
            fd = {space: metrics.fd_row(feats[space][label], feats[space][SCHNELL], feats[space][DEV_REF],
                                        n_boot=e.bootstrap, seed=cfg.seed, paired=label != DEV) for space in e.spaces}
            c2st = c2st_vs_dev(cfg, halves[0], label, cfg.seed)
            table[label] = {
                "fd": fd,
                "c2st_vs_dev": c2st["accuracy"],
                "c2st_ci": c2st["ci"],
                "c2st_auc": c2st["auc"],
                "c2st_runs": c2st_runs(cfg, halves, label),
                "placement": placement_row(cfg, label, imgs, schnell, dev, schnell_check),
                "halo_vs_dev": halo_vs_dev(label, imgs, schnell, schnell_check, halo_ref),
                **input_columns(cfg, label, schnell, imgs),
                "fid": _optional(_fid_columns, e.inception_weights, dirs, label) if label != DEV else
                {"available": False, "reason": "not computed for the dev check sample"},
                "fd_dinov2": dinov2[label],
                "cmmd": cmmd[label],
                "clip_iqa": {"available": False, "reason": metrics.NO_OFFLINE_WEIGHTS["clip_iqa"]},
            }
            bar.advance(task)
    out = {
        "rows": table,
        "order": list(table),  # JSON objects are written with sorted keys; this keeps the table's row order
        "n_images": len(schnell),
        "n_dev_check": len(dev_check),
        "c2st_halves": len(halves),
        "c2st_seeds": e.c2st_seeds,
        "bootstrap": e.bootstrap,
        "notes": table_notes(cfg, len(dev), len(dev_check)),
    }
    named = references(cfg)
    if named != (SCHNELL, DEV):  # computed under the fixed labels above; named after the models that rendered them
        rename = dict(zip((SCHNELL, DEV), named))
        out["rows"] = {rename.get(label, label): row for label, row in table.items()}
        out["order"] = [rename.get(label, label) for label in out["order"]]
        out["references"] = list(named)
    return out


def check_rows(schnell: np.ndarray, dev: np.ndarray, dev_check: np.ndarray) -> None:
    """dev pairs with schnell image for image; the dev check sample has the same image size (Rows checks each row)."""
    if dev.shape != schnell.shape or dev_check.shape[1:] != schnell.shape[1:] or len(dev_check) < 2:
        raise UserError(f"dev {dev.shape} must pair with schnell {schnell.shape}, and the dev check sample "
                         f"{dev_check.shape} needs >= 2 images of the same size")


def feature_sets(cfg: Config, dev: np.ndarray, rows: Mapping[str, np.ndarray],
                 spaces=None) -> dict[str, dict[str, np.ndarray]]:
    """{space: {row label (and DEV_REF, the reference dev images): (n, d) features}} for `spaces` (default: every FD
    and C2ST space); each row is read once, for all spaces (the feature spaces compute in batches)."""
    spaces = sorted({*cfg.evaluate.spaces, *metrics.C2ST_SPACES}) if spaces is None else list(spaces)
    feats: dict[str, dict[str, np.ndarray]] = {space: {} for space in spaces}
    with progress() as bar:  # without a terminal: a "done/total, rate, eta" line every ~30 s
        task = bar.add_task("evaluate: features", total=len(spaces) * (len(rows) + 1))
        for label in (DEV_REF, *rows):
            imgs = dev if label == DEV_REF else rows[label]
            for space in spaces:
                feats[space][label] = metrics.FEATURE_SPACES[space](imgs)
                bar.advance(task)
    return feats


def c2st_halves(cfg: Config, feats: dict, dev: np.ndarray, dev_check: np.ndarray, schnell_check: np.ndarray | None,
                outputs_check: dict[str, Row] | None) -> list[dict[str, np.ndarray]]:
    """Per test half, {label: C2ST features (all C2ST spaces side by side)}, DEV_REF the reference dev images of that
    half. Half one is the scored half (rows on schnell, against `dev`; the FLUX.1-dev row is the check half's
    dev). Half two, when `outputs_check` is given, swaps the roles: rows on `schnell_check` against `dev_check`,
    the FLUX.1-dev row being the scored half's dev."""
    spaces = metrics.C2ST_SPACES
    halves = [{label: np.concatenate([feats[s][label] for s in spaces], axis=1) for label in feats[spaces[0]]}]
    if outputs_check is not None and schnell_check is not None:
        check_rows(schnell_check, dev_check, dev)
        other = Rows({SCHNELL: schnell_check, DEV: dev, **outputs_check}, schnell_check.shape)
        feats_b = feature_sets(cfg, dev_check, other, spaces)
        halves.append({label: np.concatenate([feats_b[s][label] for s in spaces], axis=1) for label in feats_b[spaces[0]]})
    return halves


def placement_row(cfg: Config, label: str, imgs: np.ndarray, schnell: np.ndarray, dev: np.ndarray,
                  schnell_check: np.ndarray | None) -> dict | None:
    """metrics.placement_gain of a row against the dev twins of its inputs. The dev check sample is its own twin, so
    its gain is its input's whole shortfall (> 0 by construction: this rule cannot fail dev; the oracle row is
    the positive that can); None without its schnell twins."""
    if label == DEV:
        if schnell_check is None:
            return None
        return metrics.placement_gain(schnell_check, imgs, imgs, n_boot=max(cfg.evaluate.bootstrap, 1), seed=cfg.seed)
    return metrics.placement_gain(schnell, imgs, dev, n_boot=max(cfg.evaluate.bootstrap, 1), seed=cfg.seed)


def c2st_vs_dev(cfg: Config, feats: dict[str, np.ndarray], label: str, seed: int) -> dict:
    """The classifier two-sample test of a row's features against the reference dev images' (DEV_REF), on the first
    evaluate.c2st_max_images of each: pairs kept in one fold, except for the dev check sample (other faces)."""
    e = cfg.evaluate
    n = min(e.c2st_max_images, len(feats[DEV_REF]))
    both = [feats[row][:n] for row in (DEV_REF, label)]
    if label == DEV:  # an independent sample: no pairs to keep together
        return metrics.c2st(*both, seed=seed, folds=min(e.c2st_folds, len(both[1])), paired=False)
    return metrics.c2st(*both, seed=seed, folds=min(e.c2st_folds, n), paired=True)


def c2st_runs(cfg: Config, halves: list[dict[str, np.ndarray]], label: str) -> dict:
    """The C2ST of a row repeated over evaluate.c2st_seeds fold seeds on each test half: its spread, and the worst
    run (highest accuracy) with its CI top, which the gate reads; a lucky fold split cannot pass a row."""
    runs = [c2st_vs_dev(cfg, feats, label, cfg.seed + k) for feats in halves if label in feats
            for k in range(cfg.evaluate.c2st_seeds)]
    acc = [r["accuracy"] for r in runs]
    return {"runs": acc, "worst": max(acc), "best": min(acc), "worst_ci_high": max(r["ci"][1] for r in runs)}


def halo_vs_dev(label: str, imgs: np.ndarray, schnell: np.ndarray, schnell_check: np.ndarray | None,
                halo_ref: float) -> float | None:
    """The row's halo beside the edges of its inputs (metrics.edge_halo) over dev's own on the scored half: > 1 means
    more overshoot than dev draws. The dev check sample is measured beside its own schnell twins (None without)."""
    if label == DEV:
        return None if schnell_check is None else metrics.edge_halo(schnell_check, imgs) / halo_ref
    return metrics.edge_halo(schnell, imgs) / halo_ref


def input_columns(cfg: Config, label: str, schnell: np.ndarray, imgs: np.ndarray) -> dict:
    """SSIM, LPIPS and identity of a row's images against their schnell inputs (a head's), or why not computed."""
    if label == SCHNELL:  # the heads' input itself: input -> output comparisons would be trivially perfect
        ssim = lp = identity = {"available": False, "reason": "not applicable: the schnell row is the input"}
    elif label == DEV:
        ssim = lp = identity = {"available": False, "reason": "not applicable: the dev check sample shows other test pairs"}
    elif controls.is_control(label):  # only what the gate reads: a control is judged like a head there
        ssim = lp = identity = {"available": False, "reason": "not computed for a control"}
    else:
        lp = _optional(metrics.lpips_pairs, schnell, imgs, cfg.evaluate.lpips_weights)
        lp.pop("per_pair", None)
        ssim = _optional(lambda: {"available": True, "mean": float(metrics.ssim_pairs(schnell, imgs).mean())})
        identity = _optional(metrics.identity_similarity, schnell, imgs, upsample=cfg.evaluate.face_upsample)
    return {"ssim": ssim, "lpips": lp, "identity": identity}


def fid_folders(cfg: Config, rows: Mapping[str, np.ndarray], tmp: Path) -> dict[str, Path]:
    """Each row's images as PNG files under `tmp` for torch-fidelity; none when the Inception weights are missing."""
    dirs: dict[str, Path] = {}
    if metrics.inception_weights_problem(cfg.evaluate.inception_weights) is None:
        for i, (label, imgs) in enumerate(rows.items()):
            dirs[label] = tmp / f"row{i}"
            for j, img in enumerate(imgs):
                save_png(dirs[label] / f"{j:05d}.png", img)
    return dirs


def _count(n: int) -> str:
    """n in words up to ten, as the notes have always read ("all three spaces")."""
    return ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")[n] if n <= 10 else str(n)


def table_notes(cfg: Config, n_dev: int, n_dev_check: int) -> list[str]:
    """How to read Table 4, for table4.json and the report."""
    e = cfg.evaluate
    return [
        "FD_* are Fréchet distances in offline feature spaces ("
        + "; ".join(f"{name}: {space.about}" for name, space in metrics.FEATURE_SPACES.items())
        + "), not FID; FD_diff = FD_schnell - FD_dev > 0: nearer dev.",
        f"C2ST vs dev: held-out accuracy of a logistic regression on all {_count(len(metrics.C2ST_SPACES))} spaces "
        f"telling the row from dev, "
        f"{e.c2st_folds} folds, a pair's two images in one fold, 95 % Wilson CI; 0.5: indistinguishable. Each C2ST "
        f"is repeated over {e.c2st_seeds} fold seeds on both test halves (their roles swapped); the spread is "
        f"reported and the gate reads the worst run.",
        "Placement gain: how much closer each output's map of local detail energy is to its dev twin's than its "
        "schnell input's was (metrics.placement_gain, 95 % bootstrap CI over pairs): texture in the wrong place "
        "reads < 0 even when its amount and spectrum match dev's. Halo/dev: overshoot beside the portraits' "
        "strongest edges (metrics.edge_halo) over dev's own on the same inputs.",
        f"The row '{controls.ORACLE}' is dev's texture in dev's place: the gate must pass it.",
        "Rows named 'control: ...' are cheap filters of the schnell images (noise, sharpening); the register gate "
        "must reject every one of them, or it refuses to promote anything.",
        f"The test split is halved by hashed id: every row is compared with the dev images of one half "
        f"({n_dev}); the {references(cfg)[1]} row holds the other half's dev images ({n_dev_check}), an independent "
        f"sample scored against them unpaired, so the check that dev passes the gate can fail. CIs: "
        f"{e.bootstrap} resamples, 95 %.",
        "Rows named 'fitted: ...' are filters fitted in closed form to the training pairs (least squares, band "
        "energies matched to dev's, a radial spectral equaliser and its photo-safe variant, whose guards are chosen "
        "on the validation split); each gets the photo check, and a head is promoted only if its C2ST vs dev is "
        "clearly below the best of them that passes the photo rules.",
        "SSIM, LPIPS and identity compare each row's image with its schnell input (the head's input); "
        "identity averages only the pairs where dlib finds a face in both images (pairs_scored).",
    ]


def rich_table4(table: dict) -> list:
    """Table 4 as rich Tables that fit a terminal: one per feature space (FD with 95 % CIs), then the rest."""
    from rich.table import Table

    def g(v: float, digits: int) -> str:
        return f"{v if abs(v) > 1e-9 else 0.0:.{digits}g}"  # round-off of a set against itself reads as 0

    def ci(r: dict, key: str) -> str:
        lo_hi = r.get(f"{key}_ci")
        return g(r[key], 4) + (f" [{g(lo_hi[0], 3)}, {g(lo_hi[1], 3)}]" if lo_hi else "")

    def opt(c: dict, key: str) -> str:
        return f"{c[key]:.3f}" if c["available"] else "n/a"

    rows, order = table["rows"], table.get("order", list(table["rows"]))
    out = []
    for space in rows[order[0]]["fd"]:
        t = Table(title=f"Table 4 — FD in {space} space, held-out split, {table['n_images']} images "
                        f"(95 % bootstrap CI)")
        t.add_column("row", style="bold", no_wrap=True)
        for col in ("FD_schnell", "FD_dev", "FD_diff (> 0: nearer dev)"):
            t.add_column(col, justify="right")
        for label in order:
            r = rows[label]["fd"][space]
            t.add_row(label, *(ci(r, k) for k in ("fd_schnell", "fd_dev", "fd_diff")))
        out.append(t)
    t = Table(title="Table 4 — C2ST vs dev: held-out accuracy of a classifier telling the row from dev "
                    f"(0.5: indistinguishable); spread: {table.get('c2st_seeds')} fold seeds x "
                    f"{table.get('c2st_halves')} test halves; halo/dev: overshoot beside edges over dev's own")
    t.add_column("row", style="bold", no_wrap=True)
    for col in ("accuracy", "95 % CI", "AUC", "spread", "placement gain [CI]", "halo/dev"):
        t.add_column(col, justify="right")

    def spread(runs: dict | None) -> str:
        return "n/a" if not runs else f"{runs['best']:.3f}–{runs['worst']:.3f}"

    for label in order:
        r = rows[label]
        p, halo = r.get("placement"), r.get("halo_vs_dev")
        t.add_row(label, f"{r['c2st_vs_dev']:.3f}", f"[{r['c2st_ci'][0]:.3f}, {r['c2st_ci'][1]:.3f}]",
                  f"{r['c2st_auc']:.3f}", spread(r.get("c2st_runs")),
                  "n/a" if not p else f"{p['gain']:+.3f} [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}]",
                  "n/a" if halo is None else f"{halo:.2f}")
    out.append(t)
    photo = [label for label in order if "photo" in rows[label]]
    if photo:
        t = Table(title="Table 4 — fitted baselines on the photograph (worst size; the head's: reports/photo.png)")
        t.add_column("row", style="bold", no_wrap=True)
        for rule in PHOTO_RULES:
            t.add_column(rule.short, justify="right")
        t.add_column("photo rules", justify="right")
        for label in photo:
            r = rows[label]
            t.add_row(label, *(f"{r['photo'][rule.key]:.3g}" for rule in PHOTO_RULES),
                      "met" if r.get("photo_passes") else "not met")
        out.append(t)
    t = Table(title="Table 4 — input -> output fidelity; FID, FD-DINOv2, CMMD (heads and references)")
    t.add_column("row", style="bold", no_wrap=True)
    shown = [col for col in COLUMNS if col.headline is not None]
    for col in shown:  # the headline cell's header (the HTML report shows every cell)
        t.add_column(next(header for header, key in col.cells if key == col.headline), justify="right")
    for label in [label for label in order if not controls.is_control(label)]:
        t.add_row(label, *(opt(rows[label][col.key], col.headline) for col in shown))
    out.append(t)
    return out


def unavailable_reasons(table: dict) -> dict[str, str]:
    """Column -> reason, for the columns unavailable in every row (printed under the table)."""
    rows = [r for label, r in table["rows"].items()  # schnell: input columns not applicable; controls: not computed
            if label != reference_rows(table)[0] and not controls.is_control(label)]
    out = {}
    for col in COLUMN_KEYS:
        if all(not r[col]["available"] for r in rows):
            out[col] = rows[-1][col]["reason"]
    return out
