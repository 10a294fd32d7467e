"""The fitted baselines as Table 4 rows: fitted to the config's training split, and the photo-safe best a head must
beat (evaluate scores them, trials compares a recipe with them, register reads fitted_metrics' keys)."""

from __future__ import annotations

from facerealism.config import Config
from facerealism.data.split import load_images, splits
from facerealism.scoring import fitted
from facerealism.scoring.photo import photo_damage, photo_limits, validation_photos

def fitted_filters(cfg: Config, size: int) -> tuple[dict[str, fitted.Filter], dict[str, dict]]:
    """Each evaluate.fitted baseline, fitted to the training pairs read batch by batch (the photo-safe equaliser's
    guards chosen on the validation pairs and validation photographs of `size` px, never the test split):
    ({label: filter}, {label: fitted numbers})."""
    parts = splits(cfg)
    limits = photo_limits(cfg)  # what the photo-safe equaliser's guards must keep its damage under
    photos = validation_photos(size) if cfg.evaluate.fitted else []
    shift = cfg.train.paired_max_shift  # the misalignment the head's paired loss forgives, forgiven here too
    filters, params = {}, {}
    for name in cfg.evaluate.fitted:
        f = fitted.fit(name, pair_batches(parts["train"]), seed=cfg.seed, max_shift=shift,
                       validation=pair_batches(parts["validation"]), photos=photos, limits=limits, damage=photo_damage,
                       train_pairs=len(parts["train"]))
        filters[fitted.label(name)], params[fitted.label(name)] = f, f.params
    return filters, params


FIT_BATCH = 64  # pairs decoded at a time for the fits: their sums (fitted.py) do not grow with the split


def pair_batches(rows, batch: int = FIT_BATCH):
    """A callable giving a fresh pass over (schnell, dev) uint8 batches of the manifest rows, `batch` pairs each."""

    def batches():
        for start in range(0, len(rows), batch):
            part = rows.iloc[start : start + batch]
            yield load_images(part["schnell_path"]), load_images(part["dev_path"])

    return batches


def best_fitted(table: dict) -> str | None:
    """The fitted baseline a head must beat: of those that pass the photo rules (a filter that damages photographs
    is no product; run() records the verdict under "photo_passes"), the nearest dev by the gate's realism metric
    (lowest C2ST vs dev, then lowest CI top)."""
    rows = table["rows"]
    labels = [label for label in table["order"] if fitted.is_fitted(label) and rows[label].get("photo_passes")]
    return min(labels, key=lambda l: (rows[l]["c2st_vs_dev"], rows[l]["c2st_ci"][1]), default=None)


def fitted_metrics(table: dict) -> dict:
    """metrics.json keys of the best fitted baseline that passes the photo rules: what register's `beats_fitted`
    compares the head with (fitted.scored counts every fitted row, photo-safe or not)."""
    scored = sum(fitted.is_fitted(label) for label in table["order"])
    best = best_fitted(table)
    if best is None:
        return {"fitted.best": None, "fitted.scored": scored}
    row = table["rows"][best]
    return {"fitted.best": best, "fitted.scored": scored, "c2st.dev_vs_fitted": row["c2st_vs_dev"],
            "c2st.dev_vs_fitted_ci_low": row["c2st_ci"][0], "c2st.dev_vs_fitted_ci_high": row["c2st_ci"][1]}
