"""The GPU benchmark kit: end to end on CPU from tiny configs (the code path a GPU box runs), and at full size on CUDA."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from facerealism.backends import full_flux
from facerealism.cli import app
from facerealism.precision import bf16_support

TINY_ARGS = ["--configs", "tiny", "--size", "32", "--head-size", "32", "--head-batch", "1", "--head-batch", "2",
             "--train-size", "32", "--train-steps", "1", "--repeats", "1", "--random-weights"]


def test_full_size_configs_build_the_published_architecture():
    modules = full_flux.build_modules(full_flux.FULL, "meta", torch.bfloat16)  # meta: shapes only, no memory
    n = full_flux.parameter_counts(modules)
    # FLUX.1 [dev]: 11.90 B transformer; T5-XXL encoder 4.76 B; CLIP-L text 123 M; the FLUX VAE 84 M.
    assert round(n["transformer_dev"] / 1e9, 2) == 11.90 and round(n["transformer_schnell"] / 1e9, 2) == 11.89
    assert round(n["text_encoder_2"] / 1e9, 2) == 4.76 and round(n["text_encoder"] / 1e6) == 123
    assert round(n["vae"] / 1e6) == 84
    assert modules["transformer_dev"].config.guidance_embeds and not modules["transformer_schnell"].config.guidance_embeds
    assert modules["vae"].config.scaling_factor == 0.3611 and modules["vae"].config.shift_factor == 0.1159
    assert next(modules["text_encoder_2"].parameters()).dtype == torch.bfloat16
    assert modules["scheduler_dev"].config.use_dynamic_shifting and not modules["scheduler_schnell"].config.use_dynamic_shifting


def test_a_missing_config_is_named(tmp_path):
    full_flux.write_tiny_configs(tmp_path)
    (tmp_path / "vae.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing FLUX config .*vae\.json"):
        full_flux.build_modules(tmp_path, "cpu", torch.float32)


@pytest.mark.slow  # subprocesses or servers: the full layer, not the inner loop
def test_kit_runs_end_to_end_on_cpu_from_tiny_configs(tmp_path, monkeypatch):
    from facerealism import cli

    monkeypatch.setattr(cli.console, "width", 200)  # the tables unwrapped, to read them below
    out = tmp_path / "gpu_bench.json"
    result = CliRunner().invoke(app, ["gpu-bench", "--out", str(out), *TINY_ARGS])
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    # --dtype auto, as a user runs it: bf16 where this CPU computes it natively, else fp32 with bf16 variants skipped.
    native = bf16_support("cpu")[0]
    assert (r["device"], r["dtype"], r["sizes_measured"], r["skipped"]) == (
        "cpu", "bfloat16" if native else "float32", [32], {})
    assert r["bf16"]["native"] is native and (r["bf16"]["skipped"] is None) is native
    assert r["weights"].startswith("random weights from") and r["within_budget"] and 0 < r["wall_s"] <= 480
    tiny = full_flux.parameter_counts(full_flux.build_modules(full_flux.write_tiny_configs(tmp_path / "c"), "cpu",
                                                              torch.float32))
    assert r["params"] == tiny

    row = r["pipelines"]["32"]
    # The paper's settings, checked by counting transformer calls: img2img at strength 0.7 runs 35 of 50 steps.
    calls = {k: row[k]["transformer_calls"] for k in ("dev_i2i", "dev_t2i", "schnell", "schnell+head")}
    assert calls == {"dev_i2i": 35, "dev_t2i": 50, "schnell": 4, "schnell+head": 4}
    assert row["schnell"]["flop"] < row["schnell+head"]["flop"] and row["dev_i2i"]["flop"] < row["dev_t2i"]["flop"]
    for name in calls:
        assert row[name]["ms_per_image"] > 0 and row[name]["peak_memory_mb"] > 0
    for ref in ("dev_t2i", "dev_i2i"):
        ratio = row["ratio"][f"schnell+head/{ref}"]
        assert ratio["measured_pct"] == round(100 * row["schnell+head"]["ms_per_image"] / row[ref]["ms_per_image"], 2)
        assert ratio["counted_flops_pct"] == round(100 * row["schnell+head"]["flop"] / row[ref]["flop"], 2)
    # Beside them, the full-size FLOPs model at the paper's point: 7.0 % of dev for the paper's head.
    assert r["flops_model"]["512"]["schnell_plus_head_pct_of_dev"] == pytest.approx(7.03, abs=0.01)

    h = r["head_throughput"]
    assert set(h["variants"]) == ({"fp32", "bf16", "channels_last", "channels_last_bf16", "compile", "compile_bf16"}
                                  if native else {"fp32", "channels_last", "compile"})
    assert h["variants"]["fp32"]["ratio_vs_eager_fp32"] == 1.0 and h["batch_variant"] in h["variants"]
    assert [(b, v["batch"]) for b, v in h["batches"].items()] == [("1", 1), ("2", 2)]
    assert all(v["peak_memory_mb"] > 0 for v in h["batches"].values())
    assert set(r["train"]["32"]) == ({"fp32", "bf16", "bf16 channels_last"} if native else {"fp32"})
    assert all(v["steps_per_s"] > 0 for v in r["train"]["32"].values())
    model32 = r["flops_model"]["32"]["schnell_plus_head_pct_of_dev"]
    for text in ("dev_i2i", "schnell+head", f"{model32} model", "gives 7.03 %",
                 *(("compile_bf16", "bf16 channels_last") if native else ())):
        assert text in result.output


def test_kit_rejects_bad_input_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["gpu-bench", "--out", str(tmp_path / "r.json"), *TINY_ARGS, "--size", "40"])
    assert result.exit_code == 1 and "--sizes must be positive multiples of 16" in result.output
    result = CliRunner().invoke(app, ["gpu-bench", "--out", str(tmp_path / "r.json"), "--schnell", str(tmp_path)])
    assert result.exit_code == 1 and "real weights requested but not found: --dev None" in result.output


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_kit_at_full_size_on_one_gpu(tmp_path):
    from facerealism.bench.gpu import run_kit

    r = run_kit(tmp_path / "gpu_bench.json", [512, 1024], budget_s=480)
    assert r["device"] == "cuda" and r["dtype"] == "bfloat16" and r["within_budget"]
    assert r["params"]["transformer_dev"] > 11.8e9 and 512 in r["sizes_measured"]
    row = r["pipelines"]["512"]
    assert row["dev_i2i"]["transformer_calls"] == 35
    # Counted FLOPs of the timed calls agree with the FLOPs model of the same architecture within 5 %.
    model = r["flops_model"]["512"]
    assert row["dev_t2i"]["tflop"] == pytest.approx(model["dev50_tflop"], rel=0.05)
    assert row["ratio"]["schnell+head/dev_t2i"]["measured_pct"] < 20


@pytest.mark.slow  # ~85 s on 2 loaded cores: 52 pipeline steps, each call timed after a FLOP-counted warm-up
def test_kit_runs_a_preset_on_cpu_from_tiny_models_counting_its_denoiser_calls(tmp_path):
    out = tmp_path / "presets.json"
    result = CliRunner().invoke(app, ["gpu-bench", "--out", str(out), "--preset", "sd35-large", "--configs", "tiny",
                                      "--size", "32", "--repeats", "1", "--dtype", "float32", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    row = r["presets"]["sd35-large"]["sizes"]["32"]
    # the sd35-large preset's params.yaml as shipped: Turbo 4 steps; Large 28 steps, img2img at 0.7 runs 20 of them.
    assert {k: row[k]["denoiser_calls"] for k in ("fast", "slow_i2i", "slow_t2i")} == \
        {"fast": 4, "slow_i2i": 20, "slow_t2i": 28}
    assert row["fast"]["flop"] < row["slow_i2i"]["flop"] < row["slow_t2i"]["flop"]
    assert row["ratio"]["fast/slow_t2i"]["counted_flops_pct"] == round(100 * row["fast"]["flop"] /
                                                                       row["slow_t2i"]["flop"], 2)
    p = r["presets"]["sd35-large"]["params"]
    assert p["fast_denoiser"] == p["slow_denoiser"] > 0 and "text_encoder_3" in p
    assert "flops_model" not in r and "sd35-large 32^2: fast 4 calls" in result.output
    result = CliRunner().invoke(app, ["gpu-bench", "--out", str(out), "--preset", "nope", "--configs", "tiny"])
    assert result.exit_code == 1 and "unknown preset(s) ['nope']" in result.output
