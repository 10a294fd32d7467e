"""Table 4 computed: every row's FD per feature space, C2ST vs dev and its spread, placement gain, halo and optional
columns, on the test split's images (the evaluate stage reads the images and writes what this returns)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facerealism import metrics
from facerealism.config import Config
from facerealism.errors import UserError
from facerealism.progress import progress
from facerealism.scoring import controls, fitted, shards
from facerealism.scoring.table4 import (
    COLUMN_KEYS,
    COLUMNS,
    DEV,
    DEV_REF,
    SCHNELL,
    Context,
    reference_rows,
    references,
)


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


Row = np.ndarray | Callable[[], np.ndarray]
"""A Table 4 row's images (n, h, w, 3) uint8, a shards.Recipe that makes them shard by shard from files, or any
other callable making them (made once, in this process)."""


def table4(cfg: Config, schnell: shards.Source, dev: shards.Source, dev_check: shards.Source,
           outputs: dict[str, Row], *, schnell_check: shards.Source | None = None,
           outputs_check: dict[str, Row] | None = None, client=None) -> dict:
    """Every Table 4 column for the reference rows (schnell, dev) and each head's outputs.

    No set of images is held whole: every row is measured shard by shard (scoring.shards), reading its images and
    their inputs' and dev twins' from the same range of files, and what is kept is per image (features, per-pair
    values) or summed (halo counts).

    Args:
        cfg: the resolved config (evaluate section and seed).
        schnell: (n, h, w, 3) uint8 test schnell images, the heads' inputs: an array or their files (ImageFiles).
        dev: (n, h, w, 3) uint8 test dev images, paired with schnell: what every row is compared with.
        dev_check: (m, h, w, 3) uint8 dev images of other test pairs: the FLUX.1-dev row, an independent sample
            scored against `dev` (unpaired) like a candidate, so the "dev passes the gate" check can fail.
        outputs: head label -> its (n, h, w, 3) uint8 outputs on `schnell`, or a Row making them (a shards.Recipe
            reads its shards' inputs itself).
        schnell_check: (m, h, w, 3) schnell twins of `dev_check`: the dev check's placement and halo columns are
            measured against them; None leaves those two of its columns unavailable (so it fails the gate).
        outputs_check: head label -> outputs on `schnell_check`: with them every C2ST is repeated with the halves'
            roles swapped (scored on the check half, against its dev images), besides over `c2st_seeds` fold seeds.
        client: a distributed.Client whose workers measure the shards; None: this process (the same bits).

    Returns:
        {"rows": {label: {"fd": {space: {...}}, "c2st_vs_dev", ..., and each of scoring.table4.COLUMNS by its key}},
        "n_images", "notes"}; a column that cannot be computed holds {"available": False, "reason"}.
    """
    e = cfg.evaluate
    shape = check_rows(schnell, dev, dev_check)
    table: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(cfg, shape[1:3], Path(tmp))
        prepared = {col.key: col.prepare(ctx) for col in COLUMNS}  # a Measure, or why the column cannot run
        done = scored_half(cfg, ctx, schnell, dev, dev_check, outputs, schnell_check, prepared, client)
        feats = {space: {label: done[label][space] for label in done} for space in feature_spaces(cfg)}
        if outputs_check is not None and schnell_check is not None:
            check_rows(schnell_check, dev_check, dev)
        halves = c2st_halves(cfg, feats, shape, schnell_check, dev, dev_check, outputs_check, client)
        halo_ref = metrics.halo_quantile(done[DEV_REF][HALO])  # dev's own overshoot over these inputs
        measured = {col.key: {label: r[col.key] for label, r in done.items() if col.key in r}
                    if isinstance(prepared[col.key], shards.Measure) else prepared[col.key] for col in COLUMNS}
        with progress() as bar:
            task = bar.add_task("evaluate: Table 4 rows (bootstrap, C2ST)", total=len(outputs) + 2)
            for label in (SCHNELL, DEV, *outputs):
                r = done[label]
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
                    "placement": (metrics.placement_summary(r[PLACEMENT], max(e.bootstrap, 1), cfg.seed)
                                  if PLACEMENT in r else None),
                    # > 1: more overshoot beside the inputs' edges than dev draws (the dev check: beside its own twins')
                    "halo_vs_dev": metrics.halo_quantile(r[HALO]) / halo_ref if HALO in r else None,
                    **{col.key: col.compute(ctx, label, measured[col.key]) for col in COLUMNS},
                }
                bar.advance(task)
    out = {
        "rows": table,
        "order": list(table),  # JSON objects are written with sorted keys; this keeps the table's row order
        "n_images": shape[0],
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


PLACEMENT, HALO = "placement", "halo"  # the gate's two paired measures, beside the feature spaces and COLUMNS' keys


def _placement(pair: shards.Pair) -> np.ndarray:
    """Per pair: the row's and its input's detail-layout agreement with the dev twin (metrics.placement_pairs)."""
    return metrics.placement_pairs(pair.inputs, pair.images, pair.twins)


def _halo(pair: shards.Pair) -> np.ndarray:
    """The shard's near-edge overshoot counts beside its inputs' edges (metrics.halo_histogram), summed over shards."""
    return metrics.halo_histogram(pair.inputs, pair.images)


def feature_spaces(cfg: Config) -> list[str]:
    """Every space a row is featurised in: the FD spaces and the C2ST's."""
    return sorted({*cfg.evaluate.spaces, *metrics.C2ST_SPACES})


def scored_half(cfg: Config, ctx: Context, schnell: shards.Source, dev: shards.Source, dev_check: shards.Source,
                outputs: dict[str, Row], schnell_check: shards.Source | None, prepared: dict, client=None,
                shard: int = shards.SHARD) -> dict[str, dict[str, np.ndarray]]:
    """Everything Table 4 measures on the scored half, shard by shard (table4's args; `prepared`: each column's
    prepare). Rows: SCHNELL, DEV (the dev check sample, paired with its own schnell twins `schnell_check`),
    DEV_REF (the reference dev images) and `outputs`; each gets the feature spaces, placement and halo (the dev
    check only with its twins; DEV_REF: halo only, dev's own) and each optional column that measures it."""
    spaces = {space: shards.feature(space) for space in feature_spaces(cfg)}
    gate = {PLACEMENT: shards.Measure(_placement, inputs=True, twins=True),
            HALO: shards.Measure(_halo, inputs=True, total=True)}
    columns = {key: m for key, m in prepared.items() if isinstance(m, shards.Measure)}
    jobs: dict[str, shards.Job] = {}
    for label, row in {SCHNELL: schnell, DEV: dev_check, DEV_REF: dev, **outputs}.items():
        recipe = shards.recipe_of(row)
        own = [col.key for col in COLUMNS if col.key in columns and col.measures(label)]
        measures = {**spaces, **{key: columns[key] for key in own}}
        if label == DEV:  # its own twin, beside its own inputs
            if schnell_check is not None:
                measures.update(gate)
            inputs, twins = schnell_check, None
        elif label == DEV_REF:
            measures[HALO] = gate[HALO]
            inputs, twins = schnell, None
        else:
            measures.update(gate)
            inputs, twins = schnell, dev
        if label not in (DEV, DEV_REF) and len(recipe) != len(schnell):
            raise UserError(f"Table 4 row {label!r} has {len(recipe)} images, expected {len(schnell)} like schnell")
        jobs[label] = shards.Job(recipe, measures, inputs if any(m.inputs for m in measures.values()) else None, twins)
    shape = (len(schnell), *ctx.size, 3)
    return shards.measure(jobs, shape, client, shard, "evaluate: features and pairs")


def check_rows(schnell: shards.Source, dev: shards.Source, dev_check: shards.Source) -> tuple[int, ...]:
    """dev pairs with schnell image for image; the dev check sample has the same image size (each row's shards are
    checked as they are made). Returns schnell's (n, h, w, 3), read from its first image."""
    shape = (len(schnell), *schnell[:1].shape[1:])
    dev_shape = (len(dev), *dev[:1].shape[1:])
    if dev_shape != shape or dev_check[:1].shape[1:] != shape[1:] or len(dev_check) < 2:
        raise UserError(f"dev {dev_shape} must pair with schnell {shape}, and the dev check sample "
                         f"{(len(dev_check), *dev_check[:1].shape[1:])} needs >= 2 images of the same size")
    return shape


def c2st_halves(cfg: Config, feats: dict, shape: tuple[int, ...], schnell_check: shards.Source | None,
                dev: shards.Source, dev_check: shards.Source, outputs_check: dict[str, Row] | None,
                client=None) -> list[dict[str, np.ndarray]]:
    """Per test half, {label: C2ST features (all C2ST spaces side by side)}, DEV_REF the reference dev images of that
    half. Half one is the scored half (rows on schnell, against `dev`; the FLUX.1-dev row is the check half's
    dev), from `feats`. Half two, when `outputs_check` is given, swaps the roles: rows on `schnell_check` against
    `dev_check`, the FLUX.1-dev row being the scored half's dev, featurised here shard by shard."""
    spaces = metrics.C2ST_SPACES
    halves = [{label: np.concatenate([feats[s][label] for s in spaces], axis=1) for label in feats[spaces[0]]}]
    if outputs_check is not None and schnell_check is not None:
        rows = {DEV_REF: dev_check, SCHNELL: schnell_check, DEV: dev, **outputs_check}
        recipes = {label: shards.recipe_of(row) for label, row in rows.items()}
        for label, recipe in recipes.items():
            if label not in (DEV, DEV_REF) and len(recipe) != len(schnell_check):
                raise UserError(f"Table 4 row {label!r} has {len(recipe)} images on the check half, expected "
                                f"{len(schnell_check)} like its schnell images")
        feats_b = shards.features(recipes, spaces, (len(schnell_check), *shape[1:]), client)
        halves.append({label: np.concatenate([feats_b[s][label] for s in spaces], axis=1) for label in feats_b[spaces[0]]})
    return halves


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
