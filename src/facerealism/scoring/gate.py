"""The promotion gate's policy, pure: a candidate's thresholds, and whether the metric suite can say no and yes."""

from __future__ import annotations

import math

from facerealism.config import Config
from facerealism.scoring.photo import PHOTO_RULES, photo_limits


def is_number(value) -> bool:
    """A finite int or float (not a bool): what a metric must be for the gate to compare it."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def throughput(cfg: Config, benchmark: dict) -> tuple[int, float | None]:
    """(image side, fp32 head images/s at that side) read from reports/benchmark.json; None when absent."""
    size = cfg.register.throughput_size or cfg.benchmark.sizes[0]
    value = benchmark.get("head_speed", {}).get(str(size), {}).get("fp32", {}).get("images_per_s")
    return size, value if is_number(value) else None


def gate(cfg: Config, candidate: dict, champion: dict | None, benchmark: dict | None = None,
         split_changed: bool = False, photo: bool = True) -> tuple[bool, list[str]]:
    """The promotion policy; returns (passed, reasons). Every reason is a sentence a reviewer can check.

    Args:
        candidate: the candidate's flat metrics (reports/metrics.json).
        champion: the current champion's metrics, or None when there is none.
        benchmark: reports/benchmark.json; None skips the throughput floor (the stage always passes it).
        split_changed: the champion was scored on another held-out split, so its numbers are not comparable.
        photo: check the head on a photograph, colour noise, edge halos/ringing and blown highlights (off for
            Table 4's reference, fitted and control rows, which are not heads).
    """
    r = cfg.register
    reasons, passed = [], True
    for key, bound in r.required.items():
        value = candidate.get(key)
        if not is_number(value):
            passed = False
            reasons.append(f"{key} is missing or not a number: fail")
        elif value <= bound:
            passed = False
            reasons.append(f"{key} = {value:.4g} is not > {bound:g}: fail")
        else:
            reasons.append(f"{key} = {value:.4g} > {bound:g}: ok")
    for key, bound in r.below.items():  # a bound is a number or the name of another metric of the candidate
        value = candidate.get(key)
        limit = candidate.get(bound) if isinstance(bound, str) else bound
        shown = f"{bound} = {limit:.4g}" if isinstance(bound, str) and is_number(limit) else f"{bound}"
        if not is_number(value) or not is_number(limit):
            passed = False
            reasons.append(f"{key if not is_number(value) else bound} is missing or not a number: fail")
        elif value >= limit:
            passed = False
            reasons.append(f"{key} = {value:.4g} is not < {shown}: fail")
        else:
            reasons.append(f"{key} = {value:.4g} < {shown}: ok")
    if photo:
        limits = photo_limits(cfg)
        for rule in PHOTO_RULES:
            key, bound, harm = f"photo.{rule.key}", limits[rule.key], rule.harm
            value = candidate.get(key)
            if not is_number(value):
                passed = False
                reasons.append(f"{key} is missing or not a number: fail")
            elif value > bound:
                passed = False
                reasons.append(f"{key} = {value:.3g} > {bound:g}: {harm}: fail")
            else:
                reasons.append(f"{key} = {value:.3g} <= {bound:g}: ok")
    if benchmark is None:
        reasons.append("throughput not checked (no benchmark given)")
    else:
        size, speed = throughput(cfg, benchmark)
        if speed is None:
            passed = False
            reasons.append(f"benchmark has no fp32 images/s at {size}px: fail")
        elif speed < r.min_images_per_s:
            passed = False
            reasons.append(f"throughput {speed:.3g} images/s at {size}px is below the floor {r.min_images_per_s:g}: fail")
        else:
            reasons.append(f"throughput {speed:.3g} images/s at {size}px >= {r.min_images_per_s:g}: ok")
    key, margin = r.champion_metric, r.margin_over_champion
    ours = candidate.get(key)
    if champion is None:
        reasons.append("no current champion")
    elif split_changed:
        if r.on_split_change == "fail":
            passed = False
            reasons.append("champion was scored on another held-out split and register.on_split_change=fail: fail")
        else:
            reasons.append("champion was scored on another held-out split; decided on absolute thresholds only")
    elif not is_number(champion.get(key)):
        reasons.append(f"champion has no {key}; not compared")
    elif not is_number(ours):
        passed = False
        reasons.append(f"{key} is missing, so it cannot beat the champion: fail")
    elif ours <= champion[key] + margin:
        passed = False
        reasons.append(f"{key} = {ours:.4g} does not beat champion's {champion[key]:.4g} + margin {margin:g}: fail")
    else:
        reasons.append(f"{key} = {ours:.4g} beats champion's {champion[key]:.4g} + margin {margin:g}: ok")
    return passed, reasons


def beats_fitted(cfg: Config, candidate: dict) -> tuple[bool, list[str]]:
    """Does the learned head beat the best baseline fitted to the same training pairs that passes the photo rules?

    On the gate's realism metric (C2ST vs dev, lower is nearer dev) with separated 95 % CIs: the head's whole CI
    below the baseline's. A fitted filter that damages photographs is no product, so it is not the one to beat
    (fitted_rows.best_fitted). If the head does not beat it, the head is not promoted: it has not earned its place
    against a filter of a few numbers, and register may promote that filter instead, named as what it is
    (register.promote_fitted; docs/realism-gate.md).
    """
    if not cfg.register.must_beat_fitted:
        return True, ["fitted baselines not compared (register.must_beat_fitted=false)"]
    best = candidate.get("fitted.best")
    ours, theirs = candidate.get("c2st.dev_vs_enhanced_ci_high"), candidate.get("c2st.dev_vs_fitted_ci_low")
    if not best and is_number(candidate.get("fitted.scored")) and candidate["fitted.scored"] > 0:
        return True, [f"none of the {candidate['fitted.scored']:g} fitted baselines passes the photo rules, so none is "
                      f"a filter the head must beat: ok"]
    if not best:
        return False, ["no fitted baseline was scored (evaluate.fitted is empty), so the head is not compared with "
                       "the cheapest filter of its training pairs: fail"]
    if not is_number(ours) or not is_number(theirs):
        return False, ["c2st.dev_vs_enhanced_ci_high or c2st.dev_vs_fitted_ci_low is missing or not a number: fail"]
    if ours >= theirs:
        return False, [f"c2st.dev_vs_enhanced_ci_high = {ours:.4g} is not < c2st.dev_vs_fitted_ci_low = {theirs:.4g} "
                       f"of {best}: the learned head does not beat a filter fitted to the training pairs (the best "
                       f"that passes the photo rules), so the head is not promoted: fail"]
    return True, [f"c2st.dev_vs_enhanced_ci_high = {ours:.4g} < c2st.dev_vs_fitted_ci_low = {theirs:.4g} of {best}: "
                  f"the head beats the best fitted baseline that passes the photo rules: ok"]


def dev_check_config(cfg: Config) -> Config:
    """The gate as applied to the dev check sample: FD_diff's point values must be > 0 instead of its CI's low end.

    The dev check sample shows other faces than the dev images it is compared with, so its FD bootstrap cannot be
    paired; unpaired, content noise widens the random-conv interval across 0 for a genuine dev sample (measured on
    50 default pairs: [-0.16, +0.23] around +0.06). Every C2ST rule applies unchanged.
    """
    required = {key.replace("fd_diff_ci_low.", "fd_diff.", 1): bound for key, bound in cfg.register.required.items()}
    return cfg.model_copy(update={"register": cfg.register.model_copy(update={"required": required})})


def suite_check(cfg: Config, table: dict) -> tuple[bool, list[str], dict]:
    """Can the gate say no and yes? Every negative control of Table 4 must fail it; FLUX.1-dev and the oracle
    (schnell + its own dev twin's high-pass: dev's texture in dev's place), when scored, must pass it.

    The FLUX.1-dev row is an independent sample of test dev images scored against the ones every candidate is
    compared with (scoring.rows.table4), judged by `dev_check_config`: it can fail, e.g. when those are degraded.

    A control that passes means the metrics reward plain noise or sharpening, so no decision of this gate
    means anything: then nothing is promoted. Returns (sound, reasons, {row label: {"passed", "reasons"}}).

    Args:
        table: Table 4 as evaluate wrote it (reports/table4.json); not read when register.check_controls is off.
    """
    from facerealism.scoring import controls
    from facerealism.scoring.table4 import flat_metrics, reference_rows

    if not cfg.register.check_controls:
        return True, ["controls not checked (register.check_controls=false)"], {}
    dev = reference_rows(table)[1]  # the slow model's row: FLUX.1-dev by default
    rows, sound, reasons = {}, True, []
    positives = [dev] + [controls.ORACLE] * (controls.ORACLE in table["order"])
    for label in [label for label in table["order"] if controls.is_control(label)] + positives:
        passed, why = gate(dev_check_config(cfg) if label == dev else cfg, flat_metrics(table, label), None, photo=False)
        rows[label] = {"passed": passed, "reasons": why}
    fooled = [label for label, r in rows.items() if label not in positives and r["passed"]]
    n_controls = len(rows) - len(positives)
    if n_controls == 0:
        sound = False
        reasons.append("no negative control was scored (evaluate.controls is empty), so the gate is unchecked: fail")
    for label in fooled:
        sound = False
        reasons.append(f"the metric suite is fooled by {label}: it passes the gate: fail")
    if not rows[dev]["passed"]:
        sound = False
        reasons.append(f"{dev} itself (an independent sample of test dev images) fails the gate, so no head could "
                       f"pass it: fail")
    if controls.ORACLE in rows and not rows[controls.ORACLE]["passed"]:
        sound = False
        reasons.append(f"{controls.ORACLE} (dev's texture in dev's place) fails the gate, so the gate rejects the "
                       f"texture it exists to reward: fail")
    if sound:
        reasons.append(f"all {n_controls} negative controls fail the gate and {' and '.join(positives)} pass it: ok")
    return sound, reasons, rows
