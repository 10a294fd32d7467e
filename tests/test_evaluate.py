"""Table 4 (evaluate stage) and the HTML report on constructed sets whose answers are known."""

from __future__ import annotations

import json

import pytest

from facerealism.config import Config
from facerealism.data.split import splits
from facerealism.stages import run_stage
from facerealism.scoring.controls import ORACLE
from facerealism.scoring.rows import table4
from facerealism.stages.evaluate import head_dirs
from facerealism.scoring.photo import meets_photo_rules, photo_limits
from facerealism.scoring.table4 import COLUMN_KEYS, DEV, SCHNELL, flat_metrics

from .conftest import ROOT
from .test_metrics import blur, make_dev


def small_cfg() -> Config:
    cfg = Config()
    cfg.evaluate.c2st_folds, cfg.evaluate.c2st_max_images, cfg.evaluate.bootstrap = 2, 16, 10
    return cfg


@pytest.fixture(scope="module")
def paired():
    dev = make_dev(24, seed=5)
    # schnell i is a blurred rendering of dev i, as on the test split; the dev check sample shows other faces
    return blur(dev), dev, make_dev(20, seed=6)


def test_table4_rows_and_columns(paired):
    schnell, dev, dev_check = paired
    t = table4(small_cfg(), schnell, dev, dev_check, {"identity head": schnell.copy(), "oracle head": dev.copy()})
    rows = t["rows"]
    assert list(rows) == t["order"] == [SCHNELL, DEV, "identity head", "oracle head"]
    assert t["n_images"] == 24 and t["n_dev_check"] == 20
    for space in ("spectral", "random_conv"):
        ref_s, ref_d, ident, oracle = (rows[k]["fd"][space] for k in rows)
        assert ref_s["fd_schnell"] == pytest.approx(0, abs=1e-9) and oracle["fd_dev"] == pytest.approx(0, abs=1e-9)
        # A head that returns its input is schnell; one that returns dev is dev: FD_diff = -gap / +gap.
        assert ident["fd_diff"] == pytest.approx(-oracle["fd_diff"])
        assert oracle["fd_diff"] > 0 and oracle["fd_diff_ci"][0] > 0
        # The dev check row is an independent dev sample: near dev, yet not dev itself (FD to dev > 0).
        assert ref_d["fd_dev"] > 1e-6 and ref_d["fd_diff"] > 0
    assert rows["identity head"]["ssim"]["mean"] == pytest.approx(1.0)
    assert rows["oracle head"]["ssim"]["mean"] < 1.0
    # Columns that cannot run here say why, per row, and the rest of the table is still there.
    r = rows["oracle head"]
    assert r["identity"]["available"] is False and "detected a face in 0/24" in r["identity"]["reason"]
    assert "evaluate.lpips_weights" in r["lpips"]["reason"] and "evaluate.inception_weights" in r["fid"]["reason"]
    assert "DINOv2" in r["fd_dinov2"]["reason"] and "CLIP" in r["clip_iqa"]["reason"] and "CLIP" in r["cmmd"]["reason"]
    # Each row holds the gate's columns and exactly the optional columns scoring/table4.COLUMNS defines.
    gate_columns = {"fd", "c2st_vs_dev", "c2st_ci", "c2st_auc", "c2st_runs", "placement", "halo_vs_dev"}
    assert all(set(row) - gate_columns == set(COLUMN_KEYS) for row in rows.values())
    assert 0 <= r["c2st_vs_dev"] <= 1

    flat = flat_metrics(t, "oracle head")
    assert flat["fd_diff.spectral"] > 0 and flat["fd_diff.random_conv"] > 0  # the keys the register gate reads
    assert flat["fd_diff_ci_low.spectral"] > 0 and flat["fid.available"] is False
    assert flat["c2st.dev_vs_schnell"] == rows[SCHNELL]["c2st_vs_dev"]


def test_table4_logs_progress_lines_without_a_terminal(paired, monkeypatch, caplog):
    """No terminal (a Prefect worker): its long loops say done/total, rate and eta, at most every log_every_s()."""
    import logging
    import re

    monkeypatch.setenv("FACEREALISM_PROGRESS_EVERY_S", "0")
    schnell, dev, dev_check = paired
    with caplog.at_level(logging.INFO, logger="facerealism.progress"):
        table4(small_cfg(), schnell, dev, dev_check, {"head": dev.copy()})
    lines = [r.getMessage() for r in caplog.records if r.name == "facerealism.progress"]
    rows = [ln for ln in lines if ln.startswith("evaluate: Table 4 rows")]
    assert [re.match(r".*: (\d+)/3 items, [\d.]+ items/s, eta \d+:\d\d:\d\d$", ln)[1] for ln in rows] == ["1", "2", "3"]
    feats = [ln for ln in lines if ln.startswith("evaluate: features")]
    assert feats and re.search(r": (\d+)/\1 items, .* eta 0:00:00$", feats[-1]), lines


def test_table4_rejects_mismatched_outputs(paired):
    schnell, dev, dev_check = paired
    with pytest.raises(ValueError, match="'bad head' has images"):
        table4(small_cfg(), schnell, dev, dev_check, {"bad head": schnell[:, :16]})


def test_a_presets_table4_names_its_reference_rows_after_its_models(paired):
    from facerealism import presets
    from facerealism.config import load_config
    from facerealism.scoring.table4 import reference_rows, references
    from facerealism.scoring.rows import head_labels, unavailable_reasons

    assert references(small_cfg()) == (SCHNELL, DEV)  # FLUX.1 and its synthetic stand-in keep their rows' names
    for preset in presets.registry().values():
        assert references(load_config(preset.params)) == preset.models
    other = ["generate.backend=diffusers", "generate.diffusers.fast_model=/models/tiny/turbo"]
    assert references(load_config(ROOT / "params.yaml", other)) == ("turbo", "stable-diffusion-3.5-large")
    lora = [*other, "generate.diffusers.slow_model=/models/sdxl", "generate.diffusers.fast_lora=/l/lightning.safetensors"]
    assert references(load_config(ROOT / "params.yaml", lora)) == ("lightning", "sdxl")

    schnell, dev, dev_check = paired
    cfg = load_config(presets.get("z-image").params)
    cfg.evaluate = small_cfg().evaluate
    fast, slow = presets.get("z-image").models
    t, default = (table4(c, schnell, dev, dev_check, {"head": dev.copy()}) for c in (cfg, small_cfg()))
    assert t["order"] == [fast, slow, "head"] and reference_rows(t) == (fast, slow) and t["references"] == [fast, slow]
    assert "references" not in default and reference_rows(default) == (SCHNELL, DEV)
    # the same numbers under the models' names
    assert [t["rows"][label] for label in t["order"]] == [default["rows"][label] for label in default["order"]]
    assert flat_metrics(t, "head") == flat_metrics(default, "head") and head_labels(t) == ["head"]
    assert f"the {slow} row holds" in " ".join(t["notes"]) and unavailable_reasons(t) == unavailable_reasons(default)


def test_extra_head_labels_cannot_shadow_references():
    cfg = Config()
    cfg.evaluate.extra_heads = {DEV: "models/x"}
    with pytest.raises(ValueError, match="reserved"):
        head_dirs(cfg)


HAND = "esa_resnet head, recipe not recorded"  # _save_head records no training config


def _save_head(folder, arch):
    from facerealism.head import save_head
    from facerealism.models import build_generator

    kwargs = dict(ngf=8, n_blocks=1, residual_output=True)
    save_head(build_generator(arch, **kwargs), folder, arch, kwargs, {})


@pytest.mark.slow  # train and evaluate stages with a report: the full layer
@pytest.mark.usefixtures("tiny_validated")
def test_evaluate_stage_with_an_extra_head_and_report(tiny_cfg, project):
    _save_head(project / "models/head", "esa_resnet")
    _save_head(project / "models/head_resnet", "resnet")
    cfg = tiny_cfg.model_copy(deep=True)
    cfg.evaluate.bootstrap = 10
    cfg.evaluate.extra_heads = {"CycleGAN": str(project / "models/head_resnet")}
    cfg.register.photo_max["flat_grain"] = 3.0  # tight enough that some fitted rows fail (the plain equaliser's 4.8)
    out = run_stage("evaluate", cfg)
    assert {"fd_diff.spectral", "fd_diff.random_conv"} <= set(out)

    t = json.loads((project / "reports/table4.json").read_text())
    controls = [f"control: {name}" for name in cfg.evaluate.controls]
    fitted = [f"fitted: {name}" for name in cfg.evaluate.fitted]
    assert len(fitted) == 5 and t["head_label"] == HAND
    assert t["order"] == [SCHNELL, DEV, HAND, "CycleGAN", *fitted, *controls, ORACLE]
    # Every C2ST over 5 fold seeds x both test halves; placement and halo measured for every row, dev check included.
    assert t["c2st_halves"] == 2 and len(t["rows"][HAND]["c2st_runs"]["runs"]) == 2 * cfg.evaluate.c2st_seeds
    assert all(t["rows"][label]["placement"] and t["rows"][label]["halo_vs_dev"] is not None for label in t["order"])
    assert set(t["fitted"]) == set(fitted) and len(t["fitted"]["fitted: detail gains"]["gains"]) == 4
    m = json.loads((project / "reports/metrics.json").read_text())
    assert m["fd_diff.spectral"] == t["rows"][HAND]["fd"]["spectral"]["fd_diff"]
    # Every fitted row has its photo check; the best by C2ST vs dev of those meeting every photo rule is what
    # register compares the head with.
    limits = photo_limits(cfg)
    assert all(t["rows"][l]["photo_passes"] == meets_photo_rules(t["rows"][l]["photo"], limits) for l in fitted)
    safe = [l for l in fitted if t["rows"][l]["photo_passes"]]
    assert 0 < len(safe) < len(fitted) and "fitted: radial equaliser" not in safe
    best = min(safe, key=lambda l: (t["rows"][l]["c2st_vs_dev"], t["rows"][l]["c2st_ci"][1]), default=None)
    assert m["fitted.best"] == best and m["fitted.scored"] == 5
    assert best is None or m["c2st.dev_vs_fitted_ci_low"] == t["rows"][best]["c2st_ci"][0]
    # Table 4 is on one half of the test split; the other half's dev images are the dev check sample.
    test = splits(cfg)["test"]
    assert t["n_images"] + t["n_dev_check"] == len(test) == m["holdout_pairs"] + t["n_dev_check"]
    html = (project / "reports/report.html").read_text()
    assert "Table 4" in html and "CycleGAN" in html and html.count("data:image/png;base64,") >= 3
    assert "Not run yet: run the benchmark stage" in html  # the speed section waits for its stage
    assert (project / "reports/crops.png").stat().st_size > 0

    cfg.evaluate.extra_heads = {"U-Net": str(project / "models/nowhere")}
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run_stage("evaluate", cfg)


def test_report_without_inputs_and_crop_regions(tmp_path):
    from facerealism.report.html import crop_region, save_crops, write_report

    html = write_report(tmp_path).read_text()
    assert "Not run yet: run the evaluate stage" in html and "Not run yet: run the benchmark stage" in html
    imgs = make_dev(2, size=64)
    assert crop_region(imgs, "eyes").shape == (2, 13, 32, 3)  # rows 19..32, columns 16..48 of 64
    with pytest.raises(ValueError, match="unknown crop region"):
        crop_region(imgs, "nose")
    assert save_crops(tmp_path / "crops.png", {"a": imgs, "b": imgs}).stat().st_size > 0
