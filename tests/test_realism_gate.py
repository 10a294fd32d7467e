"""The default gate on the default data profile: the classifier sees the gap, every control fails, dev passes."""

import json

import numpy as np
import pytest

from facerealism.backends.painter import render_pair
from facerealism.config import load_config
from facerealism.scoring import controls, fitted
from facerealism.scoring.gate import gate, suite_check
from facerealism.scoring.photo import PHOTO_RULES, meets_photo_rules, photo_check, photo_damage, photo_limits, validation_photos
from facerealism.scoring.table4 import DEV, SCHNELL, flat_metrics
from facerealism.scoring.rows import table4

from .conftest import ROOT

N = 100  # about the default test split (20 % of 512 pairs)
N_CHECK = 50  # the dev check's independent sample (other pairs)
PHOTO_OK = {"photo.colour_noise_gain": 1.0, "photo.edge_overshoot": 1.0, "photo.clipped_gain": 0.0,
            "photo.flat_grain": 1.0}
N_TRAIN = 300  # training pairs of the fitted baselines
N_VALIDATION = 60  # validation pairs of the photo-safe equaliser's guards


def default_cfg(*overrides: str):
    return load_config(ROOT / "params.yaml", ["evaluate.bootstrap=30", *overrides])


def with_register(**fields):
    """The default config with some register fields replaced (their keys hold dots, which --set cannot spell)."""
    cfg = default_cfg()
    return cfg.model_copy(update={"register": cfg.register.model_copy(update=fields)})


def unseen_filters(equaliser: dict) -> dict:
    """Filters a head could be, built after the gate and its controls were set and never tuned against: the plain
    radial equaliser's gains (`equaliser`, its fitted params) with the photo-safe guards (flat fade, edge clamp)
    but its chroma cap lifted (chroma boosted wherever luminance is at all), and applied on skin-coloured pixels
    only."""
    guarded = fitted.rebuild("radial equaliser (photo-safe)", {
        **equaliser, "guards": {"chroma_cap": 1e6, "flat_quantile": 0.25, "edge_margin": 2.0}})
    plain = fitted.rebuild("radial equaliser", equaliser)

    def on_skin(x: np.ndarray) -> np.ndarray:
        mask = controls._skin(x)
        return np.clip(x + mask * (plain(x).astype(np.float64) - x) + 0.5, 0, 255).astype(np.uint8)

    return {"unseen: equaliser, guarded, chroma uncapped": guarded, "unseen: equaliser on skin only": on_skin}


def unseen_rows(dev: np.ndarray) -> dict:
    """Rows made of the test pairs' own dev images, realism by construction in the wrong place: another pair's
    whole dev image, and each pair's dev twin mirrored left to right (a face's texture on the other cheek)."""
    return {"unseen: another pair's dev image": np.roll(dev, 1, axis=0), "unseen: dev twin mirrored": dev[:, :, ::-1]}


# The tests on default_table are marked slow: the gate on default-profile data, a module fixture of ~45 s.
@pytest.fixture(scope="module")
def default_table(tmp_path_factory):
    """Table 4 of schnell, dev, every control and a near-dev blend on N pairs rendered with the default settings."""
    cfg = default_cfg()
    g = cfg.generate

    def render(start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [render_pair(start + i, g.size, **g.synthetic.model_dump()) for i in range(n)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    schnell, dev = render(90_000, N)
    schnell_check, dev_check = render(95_000, N_CHECK)
    train_s, train_d = render(50_000, N_TRAIN)
    photo_safe = dict(validation=render(70_000, N_VALIDATION), photos=validation_photos(g.size),
                      limits=photo_limits(cfg), damage=photo_damage)  # where the photo-safe equaliser tunes its guards
    filters = {fitted.label(name): fitted.fit(name, train_s, train_d, cfg.seed, cfg.train.paired_max_shift,
                                              **photo_safe) for name in cfg.evaluate.fitted}
    unseen = unseen_filters(filters[fitted.label("radial equaliser")].params)
    halves = []
    for s, d in ((schnell, dev), (schnell_check, dev_check)):  # the scored half, then the check half (swapped roles)
        rows = {label: f(s) for label, f in {**filters, **unseen}.items()}
        rows.update(unseen_rows(d))
        rows.update({controls.label(name): controls.apply(name, s, cfg.seed, d) for name in cfg.evaluate.controls})
        rows[controls.ORACLE] = controls.oracle(s, d)
        # What a head that closed 85 % of the gap would output: the gate must be passable by more than dev itself.
        rows["near-dev blend"] = np.clip(0.85 * d + 0.15 * s.astype(np.float64) + 0.5, 0, 255).astype(np.uint8)
        halves.append(rows)
    table = table4(cfg, schnell, dev, dev_check, halves[0], schnell_check=schnell_check, outputs_check=halves[1])
    for label, f in {**filters, **unseen}.items():  # as evaluate.run does: a fitted row is judged on its own photo
        table["rows"][label]["photo"] = photo_check(f, g.size)
    path = tmp_path_factory.mktemp("gate") / "table4.json"
    path.write_text(json.dumps(table))
    return table, path


@pytest.mark.slow
def test_the_classifier_sees_the_gap_it_exists_for(default_table):
    rows = default_table[0]["rows"]
    assert rows[SCHNELL]["c2st_vs_dev"] >= 0.90 and rows[SCHNELL]["c2st_ci"][0] >= 0.85, rows[SCHNELL]
    # An independent dev sample against the reference dev images: near chance, but not 0.5 by construction.
    assert rows[DEV]["c2st_ci"][0] <= 0.5 <= rows[DEV]["c2st_ci"][1] + 0.05 and rows[DEV]["c2st_vs_dev"] != 0.5


@pytest.mark.slow
def test_every_control_fails_the_default_gate_and_dev_passes(default_table):
    table, _ = default_table
    cfg = default_cfg()
    sound, reasons, rows = suite_check(cfg, table)
    assert sound, reasons
    assert {label for label in rows if controls.is_control(label)} == {controls.label(n) for n in controls.CONTROLS}
    assert all(not r["passed"] for label, r in rows.items() if label not in (DEV, controls.ORACLE))
    assert rows[DEV]["passed"] and rows[controls.ORACLE]["passed"], (rows[DEV], rows[controls.ORACLE])
    assert any(f"all {len(controls.CONTROLS)} negative controls fail the gate" in r for r in reasons)


@pytest.mark.slow
def test_a_gate_on_fd_diff_alone_is_caught_being_fooled(default_table):
    """Today's failure mode: FD_diff > 0 is what noise and sharpening give too; the suite check must say so."""
    table, _ = default_table
    cfg = default_cfg("register.below={}")
    sound, reasons, rows = suite_check(cfg, table)
    assert not sound
    fooled = [label for label, r in rows.items() if label not in (DEV, controls.ORACLE) and r["passed"]]
    assert fooled and all(f"the metric suite is fooled by {label}: it passes the gate: fail" in reasons for label in fooled)


@pytest.mark.slow
def test_the_gate_can_say_yes_to_a_head_that_closed_most_of_the_gap(default_table):
    table, _ = default_table
    candidate = {**flat_metrics(table, "near-dev blend"), **PHOTO_OK}
    passed, reasons = gate(default_cfg(), candidate, None)
    assert passed, reasons


@pytest.mark.slow
def test_an_empty_control_list_leaves_the_gate_unchecked(default_table):
    table, _ = default_table
    order = [label for label in table["order"] if not controls.is_control(label)]
    sound, reasons, _ = suite_check(default_cfg(), {**table, "order": order})
    assert not sound and any("no negative control was scored" in r for r in reasons)


@pytest.mark.slow
def test_the_fitted_baselines_fail_the_gate_on_the_default_data(default_table):
    """Least-squares filters fitted to the training pairs cannot fake dev's texture: schnell carries its own faint
    instance, not a copy of dev's, so amplifying it does not reach dev (they read C2ST 1.0, FD_diff < 0). When the
    renderer's schnell held 35 % of dev's instance, four band gains passed every rule (C2ST 0.94). Each fitted row
    is judged on its own photo check, as register judges one it would ship: the radial equaliser matches dev's
    spectra (C2ST ~0.6) but speckles, rings and grains the photograph; its photo-safe variant keeps the photograph
    whole with the guards it chose on validation, and loses the realism."""
    table, _ = default_table
    for name in default_cfg().evaluate.fitted:
        photo = table["rows"][fitted.label(name)]["photo"]
        candidate = {**flat_metrics(table, fitted.label(name)), **{f"photo.{r.key}": photo[r.key] for r in PHOTO_RULES}}
        passed, reasons = gate(default_cfg(), candidate, None)
        assert not passed, (name, reasons)
    limits = photo_limits(default_cfg())
    assert not meets_photo_rules(table["rows"][fitted.label("radial equaliser")]["photo"], limits)
    assert meets_photo_rules(table["rows"][fitted.label("radial equaliser (photo-safe)")]["photo"], limits)


def test_every_control_changes_its_input_by_a_measurable_amount():
    """A control whose filter silently stopped changing its images would be "rejected" for free (it is schnell)."""
    cfg = default_cfg()
    g = cfg.generate
    pairs = [render_pair(91_000 + i, g.size, **g.synthetic.model_dump()) for i in range(8)]
    schnell = np.stack([p[0] for p in pairs])
    dev = np.stack([p[1] for p in pairs])
    for name in controls.CONTROLS:
        out = controls.apply(name, schnell, cfg.seed, dev)
        changed = np.abs(out.astype(int) - schnell.astype(int))
        assert out.shape == schnell.shape and changed.mean() >= 0.3 and (changed > 2).mean() >= 0.01, (name, changed.mean())


def test_the_controls_compute_in_chunks_that_change_no_pixel(monkeypatch):
    """Evaluate's memory stays a chunk's, not the test split's: every control (its noise drawn chunk after chunk from
    one RNG) gives the same pixels whatever the chunk size."""
    cfg = default_cfg()
    g = cfg.generate
    pairs = [render_pair(92_000 + i, g.size, **g.synthetic.model_dump()) for i in range(10)]
    schnell, dev = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    whole = {name: controls.apply(name, schnell, cfg.seed, dev) for name in controls.CONTROLS}
    whole[controls.ORACLE] = controls.oracle(schnell, dev)
    monkeypatch.setattr(controls, "CHUNK", 3)  # 10 images: chunks of 3, 3, 3 and 1
    for name in controls.CONTROLS:
        assert np.array_equal(controls.apply(name, schnell, cfg.seed, dev), whole[name]), name
    assert np.array_equal(controls.oracle(schnell, dev), whole[controls.ORACLE])


def test_no_two_controls_are_the_same_filter():
    """A control that silently became another (detail gain ×2 applied at ×1) leaves the gate's rejection of its
    strength untested while every other test still passes: each control's pixels are its own, at its named strength."""
    cfg = default_cfg()
    g = cfg.generate
    pairs = [render_pair(92_000 + i, g.size, **g.synthetic.model_dump()) for i in range(8)]
    schnell, dev = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    outs = {name: controls.apply(name, schnell, cfg.seed, dev) for name in controls.CONTROLS}
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.array_equal(outs[a], outs[b]), (a, b)
    added = [np.abs(outs[f"detail gain ×{k}"].astype(int) - schnell).mean() for k in (1, 2)]
    assert 1.8 < added[1] / added[0] < 2.1, added  # twice the detail (a little less where ×2 clips)


@pytest.mark.slow
def test_the_new_controls_are_rejected_by_name(default_table):
    """Texture in the wrong place, halos, ringing and clipped highlights: each in the default list, each rejected."""
    table, _ = default_table
    _, _, rows = suite_check(default_cfg(), table)
    for name in ("grain on flat regions σ8", "ringing (brick-wall sharpen)", "halo: unsharp r3 300%",
                 "clipped highlights ×1.3"):
        assert name in default_cfg().evaluate.controls
        assert not rows[controls.label(name)]["passed"], rows[controls.label(name)]["reasons"]


PLACEMENT = ("texture pasted from another dev image", "texture pasted from another dev image, skin only")


@pytest.mark.slow
def test_misplaced_texture_fails_the_gate_while_the_oracle_and_dev_pass(default_table):
    """Texture with dev's own statistics in another face's place fails; in its own place (the oracle) it passes,
    and ranks above it. Blind to placement, the pasted rows would read like the oracle."""
    table, _ = default_table
    rows = table["rows"]
    _, _, checked = suite_check(default_cfg(), table)
    oracle = rows[controls.ORACLE]["placement"]
    assert checked[controls.ORACLE]["passed"] and checked[DEV]["passed"], checked[controls.ORACLE]["reasons"]
    assert oracle["ci"][0] > 0 and rows["near-dev blend"]["placement"]["ci"][0] > 0
    for name in PLACEMENT:
        label = controls.label(name)
        assert not checked[label]["passed"]
        assert any(r.startswith("placement.gain_ci_low") and r.endswith("fail") for r in checked[label]["reasons"])
        assert rows[label]["placement"]["ci"][1] < oracle["ci"][0], (name, rows[label]["placement"], oracle)


@pytest.mark.slow
def test_the_c2st_is_reported_over_fold_seeds_and_both_halves_and_the_gate_reads_the_worst(default_table):
    table, _ = default_table
    cfg = default_cfg()
    assert table["c2st_halves"] == 2 and table["c2st_seeds"] == cfg.evaluate.c2st_seeds
    for label in table["order"]:
        runs = table["rows"][label]["c2st_runs"]
        assert len(runs["runs"]) == 2 * cfg.evaluate.c2st_seeds and runs["worst"] == max(runs["runs"]), label
    # What the gate is handed for a candidate is its worst run, not its seed-0 figure (a row where the two differ).
    label = next(label for label in table["order"]
                 if table["rows"][label]["c2st_runs"]["worst"] != table["rows"][label]["c2st_vs_dev"])
    assert flat_metrics(table, label)["c2st.dev_vs_enhanced_worst"] == table["rows"][label]["c2st_runs"]["worst"]
    # The gate reads the worst run: a candidate whose runs straddle the bound fails though its seed-0 run is under it.
    flat = {**flat_metrics(table, "near-dev blend"), **PHOTO_OK}
    bound = cfg.register.below["c2st.dev_vs_enhanced_worst"]
    lucky = {**flat, "c2st.dev_vs_enhanced": bound - 0.05, "c2st.dev_vs_enhanced_worst": bound + 0.01}
    passed, reasons = gate(cfg, lucky, None)
    assert not passed and any(r.startswith("c2st.dev_vs_enhanced_worst") and r.endswith("fail") for r in reasons)


@pytest.mark.slow
def test_halos_beside_the_portraits_edges_fail_and_dev_does_not(default_table):
    table, _ = default_table
    rows, bound = table["rows"], default_cfg().register.below["halo.vs_dev"]
    _, _, checked = suite_check(default_cfg(), table)
    for name in ("halo: light band above edges", "halo: unsharp r3 300%"):
        assert rows[controls.label(name)]["halo_vs_dev"] > bound, (name, rows[controls.label(name)]["halo_vs_dev"])
        assert any(r.startswith("halo.vs_dev") and r.endswith("fail") for r in checked[controls.label(name)]["reasons"])
    assert rows[DEV]["halo_vs_dev"] < bound and rows[controls.ORACLE]["halo_vs_dev"] < bound


@pytest.mark.slow
def test_a_gate_that_rejects_the_oracle_is_reported_unsound(default_table):
    """A gate that no texture in dev's place could pass says no to everything; the suite check must say so."""
    table, _ = default_table
    r = default_cfg().register
    sound, reasons, rows = suite_check(with_register(required={**r.required, "placement.gain_ci_low": 0.5}), table)
    assert not rows[controls.ORACLE]["passed"] and not sound
    assert any(f"{controls.ORACLE} (dev's texture in dev's place) fails the gate" in r for r in reasons), reasons


# Measured on the default data when these were added (C2ST worst over fold seeds and halves; placement CI low):
# the guarded, uncapped equaliser 0.81 with placement +0.007 and colour-noise gain 1.6 on the photograph; the
# skin-only equaliser 0.83, placement -0.002; another pair's dev image 0.18 (copies of the reference set) and the
# mirrored twin 0.56, both placement < -0.1 and halos 4-17x dev's.
UNSEEN = {"unseen: equaliser, guarded, chroma uncapped": ("photo.colour_noise_gain",),
          "unseen: equaliser on skin only": ("placement.gain_ci_low", "photo.colour_noise_gain"),
          "unseen: another pair's dev image": ("placement.gain_ci_low", "halo.vs_dev"),
          "unseen: dev twin mirrored": ("placement.gain_ci_low", "halo.vs_dev")}


@pytest.mark.slow
def test_adversaries_the_gate_was_not_tuned_on_fail_it_by_the_rules_meant_for_them(default_table):
    """Spectrum matching whose photo damage is guarded except for colour, spectrum matching placed on skin, and dev's
    own images in the wrong place: each fooled a part of the suite (C2ST 0.18-0.83, under its 0.95 ceiling) and
    each is stopped by the rule meant for it: colour speckle on the photograph, texture not where dev's is, halos.
    Photo rules read a filter's own photo check; the dev-image rows cannot filter a photograph and are given
    harmless photo numbers, so only the portraits' metrics can stop them."""
    table, _ = default_table
    cfg = default_cfg()
    for label, stoppers in UNSEEN.items():
        photo = table["rows"][label].get("photo")
        flat = {**flat_metrics(table, label),
                **({f"photo.{r.key}": photo[r.key] for r in PHOTO_RULES} if photo else PHOTO_OK)}
        assert flat["c2st.dev_vs_enhanced_worst"] < cfg.register.below["c2st.dev_vs_enhanced_worst"], (label, flat)
        passed, reasons = gate(cfg, flat, None)
        failed = {r.split(" ", 1)[0] for r in reasons if r.endswith("fail")}
        assert not passed and set(stoppers) <= failed, (label, reasons)
