"""Table 4 computed: every row's FD per feature space, C2ST vs dev and its spread, placement gain, halo and optional
columns, on the test split's images (the evaluate stage reads the images and writes what this returns)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from facerealism import metrics
from facerealism.config import Config
from facerealism.errors import UserError
from facerealism.progress import progress
from facerealism.scoring import controls, fitted, shards
from facerealism.scoring.table4 import COLUMN_KEYS, COLUMNS, DEV, SCHNELL, Context, reference_rows, references


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
           outputs_check: dict[str, Row] | None = None, sources: dict[str, shards.Source] | None = None,
           client=None) -> dict:
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
        sources: where the feature shards read those four sets ("schnell", "dev", "dev_check", "schnell_check"),
            e.g. their files (data.split.ImageFiles); a set not named: its array. A row that is a shards.Recipe
            reads its own.
        client: a distributed.Client whose workers compute the features' shards; None: this process (the same bits).

    Returns:
        {"rows": {label: {"fd": {space: {...}}, "c2st_vs_dev", ..., and each of scoring.table4.COLUMNS by its key}},
        "n_images", "notes"}; a column that cannot be computed holds {"available": False, "reason"}.
    """
    e = cfg.evaluate
    check_rows(schnell, dev, dev_check)
    src = {"schnell": schnell, "dev": dev, "dev_check": dev_check, "schnell_check": schnell_check, **(sources or {})}
    rows = Rows({SCHNELL: schnell, DEV: dev_check, **outputs}, schnell.shape)
    feats = feature_sets(cfg, src["dev"], Rows({SCHNELL: src["schnell"], DEV: src["dev_check"], **outputs},
                                              schnell.shape), client=client)
    if outputs_check is not None and schnell_check is not None:
        check_rows(schnell_check, dev_check, dev)
    halves = c2st_halves(cfg, feats, src, outputs_check, client)
    halo_ref = metrics.edge_halo(schnell, dev)  # dev's own overshoot over these inputs: what a halo is measured against
    table: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        # the optional columns compare with dev: there, "FLUX.1-dev" is the reference itself, not the dev check sample
        ctx = Context(cfg, schnell, dev, Rows({SCHNELL: schnell, DEV: dev, **outputs}, schnell.shape), Path(tmp))
        prepared = {col.key: col.prepare(ctx) if col.prepare else None for col in COLUMNS}  # whole-table work first
        with progress() as bar:
            task = bar.add_task("evaluate: Table 4 rows (bootstrap, C2ST)", total=len(rows))
            for label, imgs in rows.items():
                fd = {space: metrics.fd_row(feats[space][label], feats[space][SCHNELL], feats[space][DEV_REF],
                                            n_boot=e.bootstrap, seed=cfg.seed, paired=label != DEV)
                      for space in e.spaces}
                c2st = c2st_vs_dev(cfg, halves[0], label, cfg.seed)
                table[label] = {
                    "fd": fd,
                    "c2st_vs_dev": c2st["accuracy"],
                    "c2st_ci": c2st["ci"],
                    "c2st_auc": c2st["auc"],
                    "c2st_runs": c2st_runs(cfg, halves, label),
                    "placement": placement_row(cfg, label, imgs, schnell, dev, schnell_check),
                    "halo_vs_dev": halo_vs_dev(label, imgs, schnell, schnell_check, halo_ref),
                    **{col.key: col.compute(ctx, label, imgs, prepared[col.key]) for col in COLUMNS},
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


def feature_sets(cfg: Config, dev: shards.Source, rows: Rows, spaces=None,
                 client=None) -> dict[str, dict[str, np.ndarray]]:
    """{space: {row label (and DEV_REF, the reference dev images): (n, d) features}} for `spaces` (default: every FD
    and C2ST space), computed in shards of each row's images (scoring.shards), on `client`'s workers or here; each
    shard is made once, for all spaces."""
    spaces = sorted({*cfg.evaluate.spaces, *metrics.C2ST_SPACES}) if spaces is None else list(spaces)
    recipes = {DEV_REF: shards.recipe_of(dev), **{label: shards.recipe_of(row) for label, row in rows.rows.items()}}
    for label, recipe in recipes.items():
        if label not in (DEV, DEV_REF) and len(recipe) != rows.shape[0]:
            raise UserError(f"Table 4 row {label!r} has {len(recipe)} images, expected {rows.shape[0]} like schnell")
    return shards.features(recipes, spaces, rows.shape, client)


def c2st_halves(cfg: Config, feats: dict, src: dict[str, shards.Source | None], outputs_check: dict[str, Row] | None,
                client=None) -> list[dict[str, np.ndarray]]:
    """Per test half, {label: C2ST features (all C2ST spaces side by side)}, DEV_REF the reference dev images of that
    half. Half one is the scored half (rows on schnell, against `dev`; the FLUX.1-dev row is the check half's
    dev). Half two, when `outputs_check` is given, swaps the roles: rows on `schnell_check` against `dev_check`,
    the FLUX.1-dev row being the scored half's dev. `src`: table4's four sets of test images, where the shards
    read them (arrays or files, checked by table4); `client`: feature_sets'."""
    spaces = metrics.C2ST_SPACES
    halves = [{label: np.concatenate([feats[s][label] for s in spaces], axis=1) for label in feats[spaces[0]]}]
    if outputs_check is not None and src["schnell_check"] is not None:
        shape = (len(src["schnell_check"]), *src["schnell_check"][:1].shape[1:])  # one image read for its size
        other = Rows({SCHNELL: src["schnell_check"], DEV: src["dev"], **outputs_check}, shape)
        feats_b = feature_sets(cfg, src["dev_check"], other, spaces, client)
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


def unavailable_reasons(table: dict) -> dict[str, str]:
    """Column -> reason, for the columns unavailable in every row (printed under the table)."""
    rows = [r for label, r in table["rows"].items()  # schnell: input columns not applicable; controls: not computed
            if label != reference_rows(table)[0] and not controls.is_control(label)]
    out = {}
    for col in COLUMN_KEYS:
        if all(not r[col]["available"] for r in rows):
            out[col] = rows[-1][col]["reason"]
    return out
