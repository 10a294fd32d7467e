"""Benchmark stage pieces: head inference variants, memory probe, Fig. 8 pipelines on tiny FLUX, the CLI command."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from facerealism.config import Config, ConfigError, load_config
from facerealism.models import build_generator
from facerealism.speed.timing import head_speed, head_variants, peak_memory, pipeline_speed

from .conftest import ROOT, cli_env


@pytest.fixture(scope="module")
def head():
    return build_generator("esa_resnet", ngf=8, n_blocks=1, residual_output=True).eval()


def test_head_variants_are_timed_against_eager_fp32(head):
    cfg = Config()
    cfg.benchmark.sizes, cfg.benchmark.repeats, cfg.benchmark.batch_size = [32], 1, 2
    # Explicit bf16: this test checks the bf16 variants themselves, on every CPU (emulated ones too: at 32 px with
    # 8 channels that costs a fraction of a second). What auto does is tested in test_precision.py.
    cfg.benchmark.mixed_precision = "bf16"
    speed, best = head_speed(head, cfg, "cpu")
    row = speed["32"]
    assert {"fp32", "bf16", "channels_last", "channels_last_bf16", "bf16_batch2"} <= set(row)
    assert row["fp32"]["ratio_vs_eager_fp32"] == 1.0 and row["bf16_batch2"]["batch"] == 2
    for r in (v for v in row.values() if isinstance(v, dict)):
        assert r["images_per_s"] > 0
        assert r["ratio_vs_eager_fp32"] == pytest.approx(r["images_per_s"] / row["fp32"]["images_per_s"], abs=0.01)
    assert best["32"]["variant"] in row


def test_compile_variants_are_listed_only_when_asked(head):
    assert "compile_bf16" not in head_variants(head, compile=False, batch_size=1)
    names = set(head_variants(head, compile=True, batch_size=4))  # torch.compile is lazy: nothing compiles here
    assert {"compile", "compile_bf16", "compile_bf16_batch4"} <= names
    # Where bf16 is emulated the bf16 variants are left out and the batched one is the fastest fp32 variant.
    assert set(head_variants(head, compile=True, batch_size=4, bf16=False)) == {
        "fp32", "channels_last", "compile", "compile_batch4"}


def test_peak_memory_sees_an_allocation_on_cpu():
    with peak_memory("cpu") as mem:
        block = np.ones(64 * 2**20, np.uint8)  # 64 MiB, touched so it is resident
        # Held for 25 sampling periods: filling it holds the GIL, so a block freed at once can slip between samples;
        # the workloads measured hold their memory for seconds.
        time.sleep(0.05)
        del block
    assert mem["peak_above_start_mb"] >= 48 and "RSS" in mem["memory_method"]


def test_fig8_pipelines_on_tiny_flux(head):
    cfg = Config()
    cfg.benchmark.pipeline_sizes, cfg.benchmark.pipeline_repeats = [32], 1
    cfg.generate.flux.dtype = "float32"
    r = pipeline_speed(cfg, head, "cpu")
    assert r["available"] and "tiny" in r["models"]
    row = r["by_size"]["32"]
    # 50 dev steps against 4 schnell steps: dev is slower even at plumbing scale.
    assert row["dev"]["ms_per_image"] > row["schnell"]["ms_per_image"] > 0
    assert row["cost_reduction_pct_vs_dev"] == pytest.approx(
        100 * (1 - row["schnell+head"]["ms_per_image"] / row["dev"]["ms_per_image"]), abs=0.01)
    cfg.benchmark.pipelines = "skip"
    assert pipeline_speed(cfg, head, "cpu") == {"available": False, "reason": "benchmark.pipelines is skip"}


def test_fig8_plot_without_pipeline_timings():
    from facerealism.report.html import fig8_png

    png = fig8_png({"device": "cpu", "pipelines": {"available": False, "reason": "off"},
                    "flops_by_size": {"256": {"dev50_tflop": 300.0, "schnell4_tflop": 20.0,
                                              "schnell4_plus_head_tflop": 20.1}}})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_pipeline_sizes_must_suit_flux():
    with pytest.raises(ConfigError, match="benchmark.pipeline_sizes"):
        load_config(ROOT / "params.yaml", ["benchmark.pipeline_sizes=[64, 40]"])


def test_cli_benchmark_without_a_head_is_one_line(project):
    res = subprocess.run([sys.executable, "-m", "facerealism.cli", "benchmark"], cwd=project, env=cli_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error:") and "models/head/head.json" in res.stderr
