"""The `register` section: the promotion gate's thresholds and the registry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat

from facerealism.config.base import Section


class RegisterConfig(Section):
    model_name: str = "facerealism-head"
    required: dict[str, float] = Field(default_factory=lambda: {
        "fd_diff_ci_low.spectral": 0.0, "fd_diff_ci_low.spectral_chroma": 0.0, "fd_diff_ci_low.random_conv": 0.0,
        "placement.gain_ci_low": 0.0})
    """metric -> strict lower bound; a missing metric fails the gate. Default: FD_diff's whole 95 % CI above 0, and the
    placement gain's (detail moved toward where each input's dev twin has it; metrics.placement_gain). Placement gain
    on the default data (2026-12-05, 95 % CI): oracle +0.026 [+0.024, +0.029], texture pasted from another face
    -0.058 [-0.067, -0.048], the same skin-masked -0.021 [-0.028, -0.015], a radial spectral equaliser -0.043
    [-0.052, -0.035], luma noise sigma 8 -0.18."""
    below: dict[str, float | str] = Field(default_factory=lambda: {
        "c2st.dev_vs_enhanced_worst": 0.95, "halo.vs_dev": 1.5})
    """metric -> strict upper bound, a number or another metric's name. Default: the C2ST vs dev under 0.95 in its
    worst run over fold seeds and both test halves (a lucky fold split cannot pass), and halos beside the portraits'
    edges under 1.5x dev's own (metrics.edge_halo). Halo ratio on the default data (2026-12-05): dev check 0.99,
    oracle 0.42, texture pasted from another face 0.32, detail gain x2 1.0, a light band above edges 2.8, unsharp
    r3 300 % 8.5."""
    photo_max: dict[str, PositiveFloat] = Field(default_factory=lambda: _photo_ceilings())
    """photo rule -> ceiling of its damage on a real photograph (evaluate's photo check; the value may not exceed it).
    Each rule, what it measures and why its ceiling sits where it does: scoring/photo.py PHOTO_RULES. Exactly one
    ceiling per rule: preflight (`facerealism check`) names a rule missing here or a key no rule has. The default
    is each rule's own `ceiling` (what params files without a base, the presets', run on)."""
    check_controls: bool = True
    """Refuse to promote unless every Table 4 control fails the gate and dev passes it. false: smoke tests only."""
    must_beat_fitted: bool = True
    """Promote a head only if its C2ST vs dev is clearly below (CIs apart) that of the best fitted baseline that passes
    the photo rules: a learned head that a filter of a few numbers matches is not promoted. false: smoke tests only."""
    promote_fitted: bool = True
    """When the head is not promoted, register that best fitted baseline (Table 4's, by its fitted numbers) as a
    fitted filter, named as one, and promote it if it passes the same gate itself; false: promote nothing then."""
    champion_metric: str = "fd_diff.spectral"
    """Compared against the current champion's value; higher is better."""
    margin_over_champion: float = 0.0
    """The candidate must beat the champion's champion_metric by more than this to replace it."""
    on_split_change: Literal["absolute_only", "fail"] = "absolute_only"
    """Champion scored on another held-out split: decide on absolute thresholds only, or refuse to promote."""
    min_images_per_s: float = Field(0.5, ge=0)
    """Throughput floor: fp32 head images/s from reports/benchmark.json; a missing benchmark fails the gate."""
    throughput_size: int | None = None
    """Image side whose benchmark is read; null = the first of benchmark.sizes."""
    human_approval: bool = False
    """Pause the Prefect flow before `@champion` moves: a person approves or rejects (with a reason) in the Prefect UI,
    seeing the gate's decision and the rating results. Off by default so `make run` runs unattended."""


def _photo_ceilings() -> dict[str, float]:
    from facerealism.scoring.photo import PHOTO_RULES

    return {rule.key: rule.ceiling for rule in PHOTO_RULES}
