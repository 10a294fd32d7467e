"""train.mixed_precision auto: bf16 only where the device computes it natively; both branches forced and checked."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys

import pytest
import torch

from facerealism import precision
from facerealism.config import load_config
from facerealism.errors import UserError
from facerealism.orchestration.preflight import preflight
from facerealism.speed import timing
from facerealism.stages import run_stage

from .conftest import ROOT, dataset_project, tiny_overrides

NATIVE, NATIVE_WHY = precision.bf16_support("cpu")


@pytest.fixture(params=["native", "emulated"])
def forced(request, monkeypatch) -> str:
    monkeypatch.setenv(precision.FORCE_ENV, request.param)
    return request.param


def test_auto_picks_bf16_only_where_it_is_native(forced):
    p = precision.resolve("auto", "cpu")
    assert (p.name, p.label, p.accelerate) == (
        ("bf16", "bf16 (native)", "bf16") if forced == "native" else ("fp32", "fp32 (no native bf16)", "no"))
    assert p.why == f"forced by {precision.FORCE_ENV}={forced}"
    assert precision.pipeline_dtype("auto", "cpu") == ("bfloat16" if forced == "native" else "float32")
    # An explicit choice is kept either way; the label says when it runs emulated.
    assert precision.resolve("fp32", "cpu").label == "fp32 (set)"
    bf16 = precision.resolve("bf16", "cpu")
    assert bf16.name == "bf16" and bf16.label == ("bf16 (set)" if forced == "native" else "bf16 (set; emulated here)")
    assert precision.pipeline_dtype("float16", "cpu") == "float16"


def test_a_bad_forced_value_or_precision_is_one_line(monkeypatch):
    monkeypatch.setenv(precision.FORCE_ENV, "fast")
    with pytest.raises(UserError, match=r"FACEREALISM_BF16='fast': use 'native' or 'emulated'"):
        precision.resolve("auto", "cpu")
    monkeypatch.delenv(precision.FORCE_ENV)
    with pytest.raises(UserError, match=r"precision 'fp16': use auto, bf16 or fp32"):
        precision.resolve("fp16", "cpu")


def test_the_detection_agrees_with_the_cpu_flags():
    """Native on x86 needs AVX-512 BF16 or AMX in /proc/cpuinfo; oneDNN's own check alone says yes on plain AVX-512."""
    if platform.machine() != "x86_64" or not os.path.exists("/proc/cpuinfo"):
        pytest.skip("the flag check is x86 Linux's")
    flags = open("/proc/cpuinfo").read().split()
    hardware = "avx512_bf16" in flags or "amx_bf16" in flags
    assert NATIVE == (hardware and torch.ops.mkldnn._is_mkldnn_bf16_supported()), NATIVE_WHY


def test_a_cpu_capped_to_avx2_reads_as_emulated():
    """ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN drop its bf16 kernels, as on an AMD EPYC Zen 3: detection must follow.
    This runs the real detection (no forcing) in a process whose oneDNN is capped."""
    code = "from facerealism import precision; p = precision.resolve('auto', 'cpu'); print(p.label, '|', p.why)"
    env = {k: v for k, v in os.environ.items() if k != precision.FORCE_ENV}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "ONEDNN_MAX_CPU_ISA": "AVX2"},
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.startswith("fp32 (no native bf16) |"), out


def test_preflight_notes_the_choice_and_warns_on_explicit_emulated_bf16(forced, project):
    f = preflight(load_config(project / "params.yaml"))
    label = "bf16 (native)" if forced == "native" else "fp32 (no native bf16)"
    assert ("train", f"precision {label}: forced by {precision.FORCE_ENV}={forced}") in f.lines
    assert not f.warnings and not f.errors
    f = preflight(load_config(project / "params.yaml", ["train.mixed_precision=bf16"]))
    if forced == "native":
        assert not f.warnings
    else:
        assert len(f.warnings) == 1 and "29-73x slower than fp32" in f.warnings[0]
        assert "set train.mixed_precision=auto" in f.warnings[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_dataset):
    with dataset_project(tmp_path_factory.mktemp("precision"), tiny_dataset) as root:
        yield root


@pytest.mark.parametrize("branch", ["native", "emulated"])
def test_training_logs_and_records_what_auto_picked(branch, data, monkeypatch, caplog):
    """The log line, the MLflow params, head.json and the model card all say which precision ran and why."""
    import mlflow

    from facerealism.mlops.card import model_card

    monkeypatch.setenv(precision.FORCE_ENV, branch)
    caplog.set_level(logging.INFO, logger="facerealism.progress")
    cfg = load_config(data / "params.yaml", tiny_overrides(data) + [
        "train.steps=2", "train.baselines=[]", "train.threads=1",
        f"paths.models={data / branch / 'models'}", f"paths.reports={data / branch / 'reports'}"])
    assert cfg.train.mixed_precision == "auto"  # the shipped default
    summary = run_stage("train", cfg)
    label = "bf16 (native)" if branch == "native" else "fp32 (no native bf16)"
    assert summary["precision"] == label
    line = f"train [{cfg.train.model}]: precision {label}: forced by {precision.FORCE_ENV}={branch}"
    assert line in caplog.text
    meta = json.loads((data / branch / "models" / "head" / "head.json").read_text())
    assert meta["precision"] == label and meta["precision_detection"].startswith("forced by")
    mlflow.set_tracking_uri(cfg.paths.mlflow_uri)
    params = mlflow.get_run(summary["mlflow_run_id"]).data.params
    assert params["train.precision"] == label and params["train.mixed_precision"] == "auto"
    assert f"Trained in **{label}**" in model_card(cfg, meta, {}, {})


def test_the_benchmark_skips_emulated_bf16_variants_with_the_reason(forced, tiny_cfg):
    from facerealism.models import build_generator

    head = build_generator("esa_resnet", ngf=8, n_blocks=1)
    cfg = tiny_cfg.model_copy(deep=True)
    cfg.benchmark.batch_size = 2
    plan, skipped = timing.bf16_plan(cfg.benchmark.mixed_precision, "cpu")
    speed, best = timing.head_speed(head, cfg, "cpu")
    names = set(speed["32"]) - {"bf16_speedup"}
    if forced == "native":
        assert skipped is None and {"bf16", "channels_last_bf16", "bf16_batch2"} <= names
    else:
        assert names == {"fp32", "channels_last", "fp32_batch2"}
        assert "emulated" in skipped and "29-73x slower" in skipped
    # fp32 is what a user asked for: nothing in bf16 is timed, on any machine.
    cfg.benchmark.mixed_precision = "fp32"
    assert not any(v["bf16"] for v in timing.head_variants(head, False, 2, bf16=timing.bf16_plan(
        "fp32", "cpu")[1] is None).values())


@pytest.mark.slow  # the whole stage (its FLOPs model costs seconds); the native branch runs in test_stages
def test_the_benchmark_stage_reports_the_skip(tiny_cfg, monkeypatch):
    """The stage's benchmark.json says that bf16 is emulated, why, and what was skipped."""
    from facerealism.head import save_head
    from facerealism.models import build_generator
    from facerealism.data import catalog

    cfg = tiny_cfg.model_copy(deep=True)
    cfg.benchmark.pipelines = "skip"
    save_head(build_generator("esa_resnet", ngf=8, n_blocks=1), catalog.HEAD.path(cfg), "esa_resnet",
              {"ngf": 8, "n_blocks": 1}, {})
    monkeypatch.setenv(precision.FORCE_ENV, "emulated")
    run_stage("benchmark", cfg)
    report = json.loads(catalog.BENCHMARK_JSON.path(cfg).read_text())
    assert report["bf16"] == {"native": False, "detection": f"forced by {precision.FORCE_ENV}=emulated",
                              "skipped": timing.bf16_plan("auto", "cpu")[1]}
    assert "bf16" not in report["head_speed"]["32"] and "fp32" in report["head_speed"]["32"]
