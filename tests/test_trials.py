"""Recipe trials: trained on the training pairs, scored on the validation pairs, never reading the test split."""

from __future__ import annotations

import numpy as np
import pytest

from facerealism import trials
from facerealism.data import catalog
from facerealism.errors import UserError
from facerealism.files import read_json


@pytest.mark.slow  # a trial trains and scores whole stages: the full layer
def test_a_trial_trains_and_scores_without_reading_a_test_pair(tiny_validated, monkeypatch):
    from facerealism.config import load_config
    from facerealism.data import split as data

    from .conftest import tiny_overrides

    cfg = load_config(tiny_validated / "params.yaml", tiny_overrides(tiny_validated) + ["split.validation_fraction=0.2"])
    read: list[str] = []
    real_load = data.load_images

    def recording(paths):  # the real loader, with a note of every file it decodes
        paths = list(paths)
        read.extend(str(p) for p in paths)
        return real_load(paths)

    for module in ("facerealism.data.split", "facerealism.stages.train", "facerealism.stages.evaluate",
                   "facerealism.scoring.fitted_rows", "facerealism.trials"):
        monkeypatch.setattr(f"{module}.load_images", recording, raising=False)
    row = trials.run_trial(cfg, "tiny-a", ["train.steps=6"])

    parts = data.splits(cfg)
    test_files = {str(p) for col in ("schnell_path", "dev_path") for p in parts["test"][col]}
    validation_files = {str(p) for col in ("schnell_path", "dev_path") for p in parts["validation"][col]}
    assert read and not set(read) & test_files, "a trial read test pairs"
    assert validation_files <= set(read), "the trial did not score on the validation pairs"
    assert row["validation_pairs"] == len(parts["validation"])

    # The head, the cheap filters it must beat, schnell; every C2ST a probability with its CI around it.
    assert {"head", "FLUX.1-schnell", "control: detail gain ×2"} <= set(row["c2st"])
    assert any(label.startswith("fitted: ") for label in row["c2st"])
    for r in row["c2st"].values():
        assert 0.0 <= r["ci"][0] <= r["accuracy"] <= r["ci"][1] <= 1.0
    assert row["best_cheap"] in row["c2st"] and row["best_cheap"] not in ("head", "FLUX.1-schnell")
    # The filter to beat passes the photo rules when any does (as in the gate), and is the nearest dev of those.
    safe = [label for label, ok in row["cheap_photo_passes"].items() if ok]
    if safe:
        assert row["best_cheap"] in safe
        assert row["c2st"][row["best_cheap"]]["accuracy"] == min(row["c2st"][label]["accuracy"] for label in safe)
    assert row["passes"] == all(row["rules"].values())
    assert (catalog.HEAD.path(trials.trial_config(cfg, "tiny-a")) / "head.json").exists()

    # One row per trial name in reports/trials.json and the Markdown table; rescoring the saved head is idempotent.
    again = trials.run_trial(cfg, "tiny-a", ["train.steps=6"], train=False)
    assert again["c2st"] == row["c2st"]
    assert list(read_json(catalog.TRIALS_JSON.path(cfg))) == ["tiny-a"]
    md = catalog.TRIALS_MD.path(cfg).read_text()
    assert "| tiny-a | train.steps=6 | 6 |" in md and "validation split" in md


def test_the_verdict_needs_separated_cis_and_every_photo_rule():
    t = {"overrides": [], "steps": 1, "steps_per_s": 1.0, "best_cheap": "fitted: x",
         "c2st": {"head": {"accuracy": 0.7, "ci": [0.6, 0.8]}, "fitted: x": {"accuracy": 0.9, "ci": [0.85, 0.95]}},
         "photo": {"colour_noise_gain": 1.0, "edge_overshoot": 5.0, "clipped_gain": 0.0},
         "rules": {"beats the best cheap filter": True, "photo edge overshoot": False}, "passes": False}
    md = trials.markdown({"t10": t, "t9": {**t, "photo": {**t["photo"], "flat_grain": 2.5}}})
    assert "no; not met: photo edge overshoot" in md and "0.700 [0.600, 0.800]" in md
    assert md.index("| t9 |") < md.index("| t10 |")  # natural order
    assert "/ 0.000 / – |" in md and "/ 0.000 / 2.50 |" in md  # a trial from before the flat-grain rule reads "–"


@pytest.mark.parametrize("name", ["../escape", "a b", ""])
def test_a_trial_name_must_name_a_folder(name, tiny_cfg):
    with pytest.raises(UserError, match="trial name"):
        trials.trial_config(tiny_cfg, name)


@pytest.mark.slow  # a trial trains and scores whole stages: the full layer
def test_cheap_filters_are_the_fitted_baselines_and_the_nearest_controls(tiny_validated):
    from facerealism.config import load_config
    from facerealism.data.split import load_images, splits

    from .conftest import tiny_overrides

    cfg = load_config(tiny_validated / "params.yaml", tiny_overrides(tiny_validated))
    schnell = load_images(splits(cfg)["test"]["schnell_path"])
    rows, safe = trials.cheap_filters(cfg, schnell)
    assert set(rows) == {f"fitted: {n}" for n in cfg.evaluate.fitted} | {f"control: {n}" for n in trials.CHEAP_CONTROLS}
    assert set(safe) == set(rows) and all(isinstance(v, bool) for v in safe.values())
    for images in rows.values():
        assert images.shape == schnell.shape and np.abs(images.astype(int) - schnell).mean() > 0.05
