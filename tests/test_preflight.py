"""Preflight and profiles: every params file passes; planted inconsistencies fail in one line, before any stage."""

from __future__ import annotations

import json
import resource
import subprocess
import time

import pytest
import yaml

from facerealism import presets
from facerealism.config import ConfigError, load_config, resolve, sources_table
from facerealism.errors import UserError
from facerealism.orchestration.preflight import preflight, require
from facerealism.orchestration.resources import GB, Machine, estimate, flux_step_flop, t5_flop

from .conftest import ROOT, cli_env

PROFILES = sorted(ROOT.glob("params*.yaml")) + [p.params for p in presets.registry().values()]
# A GPU node sized for the paper's 141k pairs at 512 px (the profiles are judged on it, not on this 2-core machine).
PAPER_NODE = Machine(ram_bytes=128 * GB, disk_free_bytes=2000 * GB, disk_where="/data")


@pytest.fixture
def paper(tmp_path, monkeypatch):
    """params.yaml and params.paper.yaml side by side in a fresh project (the profile extends params.yaml)."""
    for name in ("params.yaml", "params.paper.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # judged as on a machine that can reach the hub
    return tmp_path / "params.paper.yaml"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name if p.parent == ROOT else f"preset-{p.parent.name}")
def test_every_params_file_in_the_repository_passes_preflight(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    findings = require(load_config(path), PAPER_NODE)
    assert {stage for stage, _ in findings.lines} >= {"generate", "train", "evaluate", "register", "resources"}


def test_the_paper_profile_resolves_to_the_papers_unpaired_recipe(paper):
    cfg, sources = resolve(paper)
    t = cfg.train
    assert (t.model, t.residual_output, t.detail, t.lambda_paired, t.lambda_cyc, t.lr, t.crop, cfg.generate.size) \
        == ("esa_resnet", False, False, 0.0, 2.0, 1e-4, None, 512)
    # Nothing of the recipe is inherited: every train key that defines it comes from the profile itself.
    for key in ("model", "residual_output", "detail", "lambda_paired", "lambda_cyc", "lambda_idt", "lr", "crop",
                "batch_size", "steps", "ngf", "n_blocks", "discriminator", "d_layers"):
        assert sources[f"train.{key}"].endswith("params.paper.yaml"), key
    findings = require(cfg, PAPER_NODE)
    assert any("ESA-CycleGAN (esa_cyclegan)" in what and "output tanh" in what for _, what in findings.lines)
    # The sweep varies lambda_cyc x lr around it; the paired weight stays 0 in every trial.
    from facerealism.sweep import trial_config, trials

    assert {trial_config(cfg, c).train.lambda_paired for c in trials(cfg)} == {0.0}
    assert {c["lr"] for c in trials(cfg)} == {1e-4, 2e-4} and 2.0 in {c["lambda_cyc"] for c in trials(cfg)}


def test_a_profile_is_an_overlay_and_config_says_where_each_value_came_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"train": {"lr": 0.5, "steps": 7}, "register": {"required": {"fd_diff.spectral": 0.0, "c2st.dev_vs_enhanced": 0}}}))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(
        {"extends": "params.yaml", "train": {"lr": 0.25}, "register": {"required": {"fd_diff.spectral": 1.0}}}))
    cfg, sources = resolve(tmp_path / "p.yaml", ["train.ngf=8"])
    assert (cfg.train.lr, cfg.train.steps, cfg.train.ngf) == (0.25, 7, 8)
    # A dict-valued setting is replaced whole, so a profile can drop a base's gate rule.
    assert cfg.register.required == {"fd_diff.spectral": 1.0}
    rows = {k: s for k, _, s in sources_table(cfg, sources)}
    assert rows["train.lr"].endswith("p.yaml") and rows["train.steps"].endswith("params.yaml")
    assert rows["train.ngf"] == "--set" and rows["train.beta1"] == "default"
    assert rows["register.required"].endswith("p.yaml")
    # The CLI prints the same, one key a line.
    out = subprocess.run(["facerealism", "config", "--params", "p.yaml", "--set", "train.ngf=8"], cwd=tmp_path,
                         env=cli_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = {line.split(":")[0]: line for line in out.stdout.splitlines()}
    assert lines["train.lr"].rstrip().endswith("# p.yaml") and lines["train.steps"].rstrip().endswith("# params.yaml")
    assert lines["train.ngf"].rstrip().endswith("# --set") and lines["train.beta1"].rstrip().endswith("# default")


def test_a_broken_extends_chain_names_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="chain loops"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match="base params file not found"):
        load_config(tmp_path / "c.yaml")


PLANTED = {
    # the paper profile with the offline default's detail head switched back on (what main did silently)
    "detail without residual": (["train.detail=true"], ("train.detail", "train.residual_output")),
    # the gate requires random_conv's CI, but evaluate no longer computes that space
    "gate metric evaluate never writes": (["evaluate.spaces=[spectral, spectral_chroma]"],
                                          ("register.required.fd_diff_ci_low.random_conv",)),
    "unknown control": (["evaluate.controls=[salt and pepper]"], ("evaluate.controls", "salt and pepper")),
    "local model folder that does not exist": (["generate.flux.fast_model=/models/FLUX.1-schnell"],
                                               ("generate.flux.fast_model", "/models/FLUX.1-schnell")),
    "gate throughput size never benchmarked": (["register.throughput_size=64"], ("register.throughput_size",)),
    "photo ceiling under a misspelt rule": (["register.photo_max.flat_grian=6.0"], (
        "register.photo_max.flat_grian", "did you mean register.photo_max.flat_grain")),
    "photo rule without a ceiling": (["register.photo_max={colour_noise_gain: 1.1}"],
                                     ("register.photo_max", "edge_overshoot, clipped_gain, flat_grain")),
    "critic deeper than the image": (["train.d_layers=5", "generate.size=64", "train.crop=null"],
                                     ("train.d_layers", "64x64")),
}


@pytest.mark.parametrize("case", PLANTED)
def test_a_planted_inconsistency_fails_in_one_line_naming_the_keys(paper, case):
    overrides, names = PLANTED[case]
    start = time.process_time()  # CPU seconds (imports included on the first case): the wall clock measures neighbours
    with pytest.raises(UserError) as e:
        # A slim head (scale only) keeps the suite fast; the paper-size head is built in the tests above.
        require(load_config(paper, ["train.ngf=8", "train.n_blocks=1", "train.ndf=8", *overrides]))
    message = str(e.value)
    assert "\n" not in message and all(n in message for n in names), message
    assert time.process_time() - start < 10


def test_an_uncached_hub_model_fails_preflight_when_the_hub_is_off(paper, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    findings = preflight(load_config(paper))
    assert any("generate.flux.slow_model" in e and "HF_HUB_OFFLINE" in e for e in findings.errors)


@pytest.mark.slow  # two cold CLI starts (torch, pandas): ~10 s idle, far more on a loaded 2-core machine
def test_check_and_run_stop_at_the_planted_case_in_seconds_before_any_stage(paper):
    """The CLI as a user runs it: one `error:` line, exit 1, nothing of any stage written."""
    for command in ("check", "run"):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        # 2000 prompts: the disk of any test machine holds them, so the planted error is the only one.
        res = subprocess.run(["facerealism", command, "--params", "params.paper.yaml", "--set", "train.detail=true",
                              "--set", "prompts.n_enriched=2000"],
                             cwd=paper.parent, env=cli_env(), capture_output=True, text=True, timeout=120)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        assert res.returncode == 1, res.stdout + res.stderr
        errors = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: preflight: train.detail=true"), res.stderr
        # CPU seconds, not wall: on a shared 2-core machine the wall clock measures the neighbours.
        assert cpu < 10, (command, cpu, wall)
    assert not any((paper.parent / d).exists() for d in ("data", "models", "reports", "mlflow.db"))


def test_the_paper_profile_prints_its_resources_and_fits_only_a_machine_it_fits(paper):
    cfg = load_config(paper)
    lines = [what for stage, what in require(cfg, PAPER_NODE).lines if stage == "resources"]
    assert "141,000 pairs at 512 px" in lines[0] and "8 decode workers" in lines[0], lines
    assert "GPU-hours" in lines[1] and "generate ~" in lines[1] and "train ~" in lines[1], lines
    n = estimate(cfg)
    # 141k pairs x 2 PNGs of 512² at <= 1.8 bytes a pixel; FLUX schnell-4 + dev img2img 35 steps ~ 700 TFLOP a pair.
    assert 100 * GB < n.disk_bytes < 150 * GB and 650 < n.generate_tflop_per_pair < 750
    # num_workers 0 decodes each batch from disk in the training process too: a batch's RAM, not the dataset's.
    in_process = load_config(paper, ["train.num_workers=0"])
    assert estimate(in_process).train_ram_bytes < 0.1 * GB and not preflight(in_process, PAPER_NODE).errors
    with pytest.raises(UserError, match=r"batches of train\.batch_size=60000 at 512 px need ~377\.5 GB, this machine "
                                        r"has 128 GB; lower train\.batch_size"):
        require(load_config(paper, ["train.num_workers=0", "train.batch_size=60000"]), PAPER_NODE)
    # The lent GPU machine's 64 GB disk cannot hold the pairs: refused, naming where they go.
    small = Machine(ram_bytes=128 * GB, disk_free_bytes=64 * GB, disk_where="/work")
    with pytest.raises(UserError, match=r"need ~134 GB, /work has 64 GB free; point paths\.data at a larger disk"):
        require(cfg, small)


def test_a_dataset_too_small_for_the_batch_or_the_splits_fails_in_preflight():
    cfg = load_config(ROOT / "params.yaml", ["prompts.n_enriched=3", "prompts.n_baseline=0",
                                             "train.batch_size=200000"])
    errors = preflight(cfg, PAPER_NODE).errors
    assert any(e.startswith("3 pairs (prompts.n_enriched + prompts.n_baseline) x (1 - split.holdout_fraction 0.3 - "
                            "split.validation_fraction 0.15) leave ~1.6 training pairs") for e in errors), errors
    assert any(e.startswith("train.batch_size=200000 is larger than the ~2 training pairs") for e in errors), errors
    assert any("~0.9 test pairs" in e and "split.holdout_fraction" in e for e in errors), errors
    # The default's batch fits its ~440 training pairs; one more than them does not.
    assert not preflight(load_config(ROOT / "params.yaml"), PAPER_NODE).errors
    with pytest.raises(UserError, match=r"train\.batch_size=441 is larger than the ~440 training pairs"):
        require(load_config(ROOT / "params.yaml", ["train.batch_size=441"]), PAPER_NODE)


def test_a_run_that_outgrows_this_machines_ram_with_workers_names_the_workers():
    cfg = load_config(ROOT / "params.yaml", ["train.num_workers=4"])
    ram = estimate(cfg).train_ram_bytes
    assert not preflight(cfg, Machine(ram, PAPER_NODE.disk_free_bytes, "/data")).errors
    with pytest.raises(UserError, match=r"train\.num_workers=4 worker processes .* lower train\.num_workers"):
        require(cfg, Machine(ram * 0.9, PAPER_NODE.disk_free_bytes, "/data"))


@pytest.mark.slow  # builds a full-size FLUX transformer and T5-XXL on the meta device (~10 s on 2 cores)
def test_the_flop_formulas_match_torchs_count_of_the_full_size_models():
    from facerealism.speed.flops import flux_cost_models, FLUX_TRANSFORMER, T5_XXL

    counted = flux_cost_models([512], "esa_resnet")[512]["per_call_tflop"]
    assert flux_step_flop(FLUX_TRANSFORMER, 512, 256) / 1e12 == pytest.approx(counted["schnell_step"], rel=2e-3)
    assert t5_flop(T5_XXL, 256) / 1e12 == pytest.approx(counted["t5_256"], rel=2e-3)
    assert t5_flop(T5_XXL, 512) / 1e12 == pytest.approx(counted["t5_512"], rel=2e-3)


def test_the_flux_flop_counts_are_cached_by_everything_they_depend_on(tmp_path, monkeypatch):
    """The benchmark counts the 12B transformer's FLOPs once per configuration, size and library version; a change to
    any of them, or a torn cache file, counts again."""
    from facerealism.speed import flops

    monkeypatch.setenv("FACEREALISM_CACHE", str(tmp_path))
    counted = []

    def fake_count(sizes):  # what torch would count, without the seconds it takes
        counted.append(list(sizes))
        return {s: {"schnell_step": s, "dev_step": 2 * s, "t5_256": 3, "t5_512": 4, "vae_decode": 5} for s in sizes}

    monkeypatch.setattr(flops, "_count_flux", fake_count)
    first = flops.flux_cost_models([64], "esa_resnet")
    assert flops.flux_cost_models([64], "esa_resnet") == first and counted == [[64]]
    assert first[64]["per_call_tflop"]["head"] > 0  # the head is always counted, from the code that builds it
    flops.flux_cost_models([128], "esa_resnet")
    monkeypatch.setattr(flops, "FLUX_VAE", {**flops.FLUX_VAE, "latent_channels": 8})
    flops.flux_cost_models([64], "esa_resnet")
    assert counted == [[64], [128], [64]]
    files = sorted((tmp_path / "flops").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert len(files) == 3 and json.loads(files[-1].read_text()).keys() == {"64"}
    files[-1].write_text("{")  # the current key's file, torn
    flops.flux_cost_models([64], "esa_resnet")
    assert counted == [[64], [128], [64], [64]] and not list((tmp_path / "flops").glob("*.tmp"))
