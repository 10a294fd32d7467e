"""The weights-free cost model of each preset: shipped configs build the published sizes; calls follow the presets."""

from __future__ import annotations

import pytest

from facerealism.speed import preset_flops as pf


@pytest.mark.slow
def test_shipped_configs_build_the_published_parameter_counts():
    n = {k: round(v / 1e6) for k, v in pf.parameter_counts().items()}
    assert n["sd35_large_transformer"] == 8057 and n["sdxl_unet"] == 2567 and n["qwen3_4b"] == 4022
    assert n["clip_l"] == 123 and n["clip_g"] == 695 and n["t5_xxl"] == 4762
    assert n["z_image_transformer"] == 6155 and n["flux2_klein_4b_transformer"] == 3876
    assert all(n[v] == 84 for v in ("sd35_vae", "sdxl_vae", "flux2_vae", "z_image_vae"))


@pytest.mark.parametrize(("steps", "strength", "int_strength", "calls"),
                         [(50, 0.7, False, 35), (28, 0.7, False, 20), (28, 0.7, True, 19), (10, 0.7, True, 7),
                          (10, 0.7, False, 7), (4, 1.0, False, 4)])
def test_img2img_steps_follow_each_pipelines_rule(steps, strength, int_strength, calls):
    assert pf.img2img_steps(steps, strength, int_strength) == calls


@pytest.mark.slow
def test_sd35_cost_counts_the_presets_steps_and_guidance():
    r = pf.preset_cost("sd35-large", 256)
    # Turbo: 4 calls, no CFG; Large: 28 steps with batched CFG (batch 2), img2img at 0.7 runs 20 of them.
    assert (r["fast"]["denoiser_calls"], r["fast"]["batch"]) == (4, 1)
    assert (r["slow_t2i"]["denoiser_calls"], r["slow_t2i"]["batch"], r["slow_i2i"]["denoiser_calls"]) == (28, 2, 20)
    per = r["per_call_tflop"]
    assert per["denoiser_batch2"] == pytest.approx(2 * per["denoiser_batch1"], rel=0.01)
    assert r["slow_i2i"]["flop"] < r["slow_t2i"]["flop"] and 0 < r["fast_pct_of_slow_t2i"] < 10
    with pytest.raises(Exception, match=r"unknown preset 'nope'"):
        pf.preset_cost("nope")
