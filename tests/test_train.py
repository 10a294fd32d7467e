"""Training at full scope on the tiny profile: exact resume after SIGKILL, the three heads, LPIPS, the sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from facerealism.config import load_config
from facerealism.errors import UserError
from facerealism.stages import run_stage

from .conftest import ROOT, cli_env, dataset_project, tiny_overrides

# fp32 and one thread: bit-exact arithmetic is what makes "resumed == uninterrupted" testable.
EXACT = ["train.mixed_precision=fp32", "train.threads=1", "train.log_every=5", "train.baselines=[]"]


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_dataset):
    """This module's copy of the tiny dataset; each test trains into its own models/ folder."""
    with dataset_project(tmp_path_factory.mktemp("train"), tiny_dataset) as root:
        yield root


def cfg_for(root: Path, name: str, *extra: str):
    return load_config(root / "params.yaml", tiny_overrides(root) + EXACT + [
        f"paths.models={root / name / 'models'}", f"paths.reports={root / name / 'reports'}", *extra])


def head_weights(models: Path) -> dict[str, torch.Tensor]:
    return load_file(str(models / "head" / "head.safetensors"))


@pytest.mark.slow  # a Prefect flow, subprocesses or full-size FLOPs: the full layer
def test_sigkilled_training_resumes_to_identical_weights(data):
    steps = ["train.steps=40", "train.checkpoint_every=5"]
    ref = run_stage("train", cfg_for(data, "ref", *steps))
    assert ref["resumed_from_step"] is None

    killed = data / "killed" / "models"
    sets = [f"--set={s}" for s in tiny_overrides(data) + EXACT + steps +
            [f"paths.models={killed}", f"paths.reports={data / 'killed' / 'reports'}"]]
    proc = subprocess.Popen([str(Path(os.sys.executable).parent / "facerealism"), "stage", "train", *sets],
                            cwd=data, env={**cli_env(), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((killed / "checkpoints").glob("step-*")):
        assert proc.poll() is None, f"training exited before its first checkpoint: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "head").exists(), "killed too late: training had finished"

    out = run_stage("train", cfg_for(data, "killed", *steps, "train.resume=true"))
    assert 5 <= out["resumed_from_step"] < 40
    a, b = head_weights(data / "ref" / "models"), head_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The loss history across the kill matches the uninterrupted one too (same batches, same pools).
    hist = lambda name: json.loads((data / name / "reports" / "train.json").read_text())["history"]  # noqa: E731
    assert hist("ref") == [{**h, "steps_per_s": r["steps_per_s"]} for h, r in zip(hist("killed"), hist("ref"))]


def test_resume_refuses_a_changed_learning_config_and_records_a_longer_run(data):
    steps = ["train.steps=4", "train.checkpoint_every=2"]
    run_stage("train", cfg_for(data, "changed", *steps))  # leaves the step-2 checkpoint
    with pytest.raises(UserError, match=r"trained with train\.lr=0\.0005, this config has 0\.0002.*train\.resume=false"):
        run_stage("train", cfg_for(data, "changed", *steps, "train.resume=true", "train.lr=0.0002"))
    with pytest.raises(UserError, match=r"split\.holdout_fraction"):
        run_stage("train", cfg_for(data, "changed", *steps, "train.resume=true", "split.holdout_fraction=0.5"))
    out = run_stage("train", cfg_for(data, "changed", "train.steps=6", "train.checkpoint_every=2", "train.resume=true"))
    assert out["resumed_from_step"] == 2
    meta = json.loads((data / "changed" / "models" / "head" / "head.json").read_text())
    assert meta["resume_changes"] == {"train.steps": [4, 6]} and meta["config"]["train"]["steps"] == 6
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{data}/mlflow.db").get_run(meta["mlflow_run_id"])
    assert run.data.tags["resume.step_2.train.steps"] == "4 -> 6" and run.data.params["train.steps"] == "4"


def test_bad_checkpoints_fail_in_one_line_and_are_kept(data):
    cfg = cfg_for(data, "bad", "train.steps=4", "train.checkpoint_every=2")
    run_stage("train", cfg)
    ckpts = sorted((data / "bad" / "models" / "checkpoints").glob("step-*"))
    assert [p.name for p in ckpts] == ["step-00000002"]  # step 4 is the end: the head, not a checkpoint

    other = cfg_for(data, "bad", "train.steps=4", "train.model=resnet", "train.resume=true")
    with pytest.raises(ValueError, match=r"is for .*esa_resnet.*set train.resume=false"):
        run_stage("train", other)

    tensors = ckpts[-1] / "state.safetensors"
    blob = bytearray(tensors.read_bytes())
    blob[-10] ^= 0xFF
    tensors.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"^corrupted checkpoint .*state.safetensors"):
        run_stage("train", cfg_for(data, "bad", "train.steps=4", "train.resume=true"))
    assert tensors.read_bytes() == bytes(blob)  # a failed resume leaves the evidence alone


@pytest.mark.parametrize("model", ["esa_resnet", "resnet", "unet_cbam"])
def test_each_head_trains_and_loads(data, model):
    from facerealism.head import load_head

    out = run_stage("train", cfg_for(data, model, f"train.model={model}", "train.steps=3", "train.unet_depth=3"))
    G, meta = load_head(data / model / "models" / "head")
    mode = "residual" if model == "unet_cbam" else "detail"  # detail: gains on the input's own detail bands
    assert meta["arch"] == model and meta["residual_output"] is True and meta["output_mode"].startswith(mode)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert G(x).shape == x.shape
    if model != "unet_cbam":
        assert set(out["final_losses"]) >= {"G_A", "cycle_A", "paired_A"}  # the default's paired term trains
    if model == "unet_cbam":
        assert meta["lpips"].startswith("unavailable (train.lpips_weights is not set")
        assert set(out["final_losses"]) == {"grad", "l1"}
    else:
        assert 0 < out["validation_cycle_ssim"] <= 1 and out["final_cycle_l1"] > 0


def test_unet_trains_with_lpips_from_a_local_backbone_file(data, tmp_path):
    import torchvision

    torch.manual_seed(0)
    weights = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet().state_dict(), weights)  # random: proves the plumbing only
    cfg = cfg_for(data, "lpips", "train.model=unet_cbam", "train.steps=2", "train.unet_depth=3",
                  f"train.lpips_weights={weights}")
    out = run_stage("train", cfg)
    assert out["lpips"] == f"alex: {weights}" and set(out["final_losses"]) == {"grad", "lpips"}
    meta = json.loads((data / "lpips" / "models" / "head" / "head.json").read_text())
    assert meta["lpips"] == f"alex: {weights}"

    torch.save({"classifier.1.weight": torch.zeros(1)}, weights)
    with pytest.raises(ValueError, match="is not a torchvision alex state dict"):
        run_stage("train", cfg)


def in_memory_batches(A: torch.Tensor, B: torch.Tensor, crop: int | None, batch_size: int, paired: bool, seed,
                      count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The in-memory sampler the streaming one replaced (#35), as it drew batches from decoded (n, 3, h, w) images:
    the reference its batches must equal."""
    rng, (_, _, h, w) = np.random.default_rng(seed), A.shape
    crop = crop or w

    def window(images, i, y, x, flip):
        patch = images[i, :, y : y + crop, x : x + crop]
        return patch.flip(-1) if flip else patch

    def crops(images, idx):
        out = []
        for i in idx:
            y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
            out.append(window(images, i, y, x, rng.random() < 0.5))
        return torch.stack(out)

    def pairs(idx):
        out_a, out_b = [], []
        for i in idx:
            y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
            flip = rng.random() < 0.5
            out_a.append(window(A, i, y, x, flip)), out_b.append(window(B, i, y, x, flip))
        return torch.stack(out_a), torch.stack(out_b)

    batches = []
    for _ in range(count):
        if paired:
            batches.append(pairs(rng.integers(0, len(A), batch_size)))
        else:
            a = crops(A, rng.integers(0, len(A), batch_size))
            batches.append((a, crops(B, rng.integers(0, len(B), batch_size))))
    return batches


def _png_pairs(folder: Path, n: int, size: int = 24):
    """n (schnell, dev) PNG pairs of noise, dev = schnell + 10 grey levels (clipped), as manifest rows."""
    import pandas as pd

    from facerealism.files import save_png

    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"schnell_path": [str(folder / f"s{i}.png") for i in range(n)],
                         "dev_path": [str(folder / f"d{i}.png") for i in range(n)]})
    for s, d in zip(rows["schnell_path"], rows["dev_path"]):
        x = rng.integers(0, 246, (size, size, 3), dtype=np.uint8)
        save_png(s, x), save_png(d, x + 10)
    return rows


@pytest.mark.parametrize("model, lambda_paired, crop", [("esa_resnet", 0.0, 16), ("esa_resnet", 100.0, 16),
                                                        ("unet_cbam", 0.0, None)])
def test_the_sampler_decodes_each_batch_from_disk_into_the_in_memory_samplers_batches(tmp_path, model,
                                                                                     lambda_paired, crop):
    """Same seed, same batches as when the whole split was decoded into RAM (unpaired, paired term, paired model),
    and a resume from its RNG state continues them; the sampler holds paths, never pixels."""
    from facerealism.config import Config
    from facerealism.data.split import load_images, to_tensor
    from facerealism.trainers.samplers import Sampler, draws_pairs

    rows = _png_pairs(tmp_path, 6)
    cfg = Config.model_validate({"train": {"model": model, "lambda_paired": lambda_paired, "crop": crop,
                                           "batch_size": 3}})
    paired = draws_pairs(cfg)
    assert paired == (model == "unet_cbam" or lambda_paired > 0)
    A, B = to_tensor(load_images(rows["schnell_path"])), to_tensor(load_images(rows["dev_path"]))
    want = in_memory_batches(A, B, crop, 3, paired, 7, 4)
    sampler = Sampler(rows, cfg, "cpu", 7)
    got = [sampler.next() for _ in range(2)]
    resumed = Sampler(rows, cfg, "cpu", 0)
    resumed.set_rng_state(sampler.rng_state())  # what a checkpoint at batch 2 restores
    got += [resumed.next() for _ in range(2)]
    for (a, b), (wa, wb) in zip(got, want, strict=True):
        assert torch.equal(a, wa) and torch.equal(b, wb)
        assert a.shape == (3, 3, crop or 24, crop or 24)
        assert torch.allclose(b, a + 10 / 127.5, atol=1e-6) == paired  # a pair's window and flip, or independent
    held = [v for obj in (sampler, sampler.files) for v in vars(obj).values()]
    assert not any(isinstance(v, (torch.Tensor, np.ndarray)) for v in held)  # memory does not grow with the pairs
    assert sampler.files.a == list(rows["schnell_path"]) and sampler.files.b == list(rows["dev_path"])


def test_the_sampler_refuses_images_smaller_than_the_crop_or_of_another_size(tmp_path):
    from facerealism.config import Config
    from facerealism.files import save_png
    from facerealism.trainers.samplers import Sampler

    rows = _png_pairs(tmp_path, 4)
    with pytest.raises(UserError, match="images are 24x24 px, smaller than train.crop=32"):
        Sampler(rows, Config.model_validate({"train": {"crop": 32}}), "cpu", 0)
    save_png(rows["dev_path"][2], np.zeros((20, 20, 3), np.uint8))
    sampler = Sampler(rows, Config.model_validate({"train": {"crop": 16, "batch_size": 16}}), "cpu", 0)
    with pytest.raises(UserError, match="d2.png is 20x20 px, the first training image 24x24"):
        sampler.next()


def test_the_gradient_loss_ignores_colour():
    from facerealism.trainers import gradient_loss

    a = torch.rand(3, 3, 8, 8)
    assert gradient_loss(a + 0.3, a) < 1e-6 < gradient_loss(a.flip(-2), a)


@pytest.mark.slow  # a Prefect flow, subprocesses or full-size FLOPs: the full layer
def test_sweep_flow_runs_nested_trials_and_picks_by_cycle_loss(data):
    import mlflow

    from flows.sweep import run_sweep

    over = tiny_overrides(data) + ["sweep.lambda_cyc=[2.0]", "sweep.lr=[0.0001, 0.0002]",
                                   "sweep.steps=3", "sweep.workers=1",
                                   f"paths.models={data / 'sweep' / 'models'}", f"paths.reports={data / 'sweep' / 'reports'}"]
    report = run_sweep(str(data / "params.yaml"), over)
    assert json.loads((data / "sweep" / "reports" / "sweep.json").read_text()) == json.loads(json.dumps(report))
    trials = report["trials"]
    assert [t["name"] for t in trials] == ["cyc2_lr0.0001", "cyc2_lr0.0002"]
    ok = [t for t in trials if t["validation_cycle_ssim"] >= 0.9]
    assert all(t["failed"] == (t not in ok) for t in trials)
    assert report["best"] == min(ok, key=lambda t: t["final_cycle_l1"])
    mlflow.set_tracking_uri(f"sqlite:///{data}/mlflow.db")
    children = mlflow.search_runs(experiment_names=["facerealism"],
                                  filter_string=f"tags.mlflow.parentRunId = '{report['mlflow_parent_run_id']}'")
    assert sorted(children["tags.mlflow.runName"]) == ["cyc2_lr0.0001", "cyc2_lr0.0002"]


@pytest.mark.parametrize("name", ["cpu", "1gpu", "8gpu", "multinode"])
def test_accelerate_configs_are_valid(name):
    cfg = yaml.safe_load((ROOT / "infra" / "accelerate" / f"{name}.yaml").read_text())
    expected = {"cpu": (1, 1, "NO"), "1gpu": (1, 1, "NO"), "8gpu": (8, 1, "MULTI_GPU"), "multinode": (16, 2, "MULTI_GPU")}
    assert (cfg["num_processes"], cfg["num_machines"], cfg["distributed_type"]) == expected[name]
    assert cfg["use_cpu"] is (name == "cpu") and cfg["mixed_precision"] == "bf16"
    if name == "multinode":
        assert cfg["main_process_ip"] and cfg["main_process_port"] and "machine_rank" in cfg


def test_gradient_accumulation_steps_the_optimisers_once_per_accumulated_batch(data):
    from facerealism.trainers import checkpoint

    cfg = cfg_for(data, "accum", "train.steps=4", "train.grad_accum=3", "train.batch_size=1", "train.checkpoint_every=2",
                  "train.log_every=2")
    out = run_stage("train", cfg)
    tensors, meta = checkpoint.load(checkpoint.list_checkpoints(data / "accum" / "models" / "checkpoints")[-1])
    assert meta["step"] == 2
    # Adam counted 2 steps for 6 micro-batches; the schedule moved once per optimiser step as well.
    adam_steps = {float(v) for k, v in tensors.items() if k.startswith("opt.G.") and k.endswith(".step")}
    assert adam_steps == {2.0}
    assert meta["trainer"]["schedulers"]["G"]["last_epoch"] == 2
    assert out["steps"] == 4 and [h["step"] for h in out_history(data, "accum")] == [2, 4]


def out_history(root: Path, name: str) -> list[dict]:
    return json.loads((root / name / "reports" / "train.json").read_text())["history"]


def test_channels_last_trains_the_same_head_and_ships_it_contiguous(data):
    from facerealism.head import load_head

    run_stage("train", cfg_for(data, "nchw", "train.steps=3"))
    run_stage("train", cfg_for(data, "nhwc", "train.steps=3", "train.channels_last=true"))
    (G, _), (G_cl, _) = (load_head(data / name / "models" / "head") for name in ("nchw", "nhwc"))
    assert all(p.is_contiguous() for p in G_cl.parameters())
    # Same function up to float round-off (weights are not compared: Adam amplifies the round-off in the
    # biases ahead of instance norms, whose true gradient is zero).
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert (G(x) - G_cl(x)).abs().max() < 1e-2 and (G(x) - x).abs().max() > 1e-3


def test_compiled_training_saves_plain_weights_and_resumes(data):
    """The compile switch end to end with dynamo's capture but no code generation (inductor takes minutes here)."""
    from facerealism.head import load_head

    steps = ["train.steps=4", "train.checkpoint_every=2", "train.compile=true", "train.compile_backend=eager"]
    run_stage("train", cfg_for(data, "compiled", *steps))
    G, _ = load_head(data / "compiled" / "models" / "head")  # strict load: no torch.compile key prefixes
    ckpt = next((data / "compiled" / "models" / "checkpoints").glob("step-*"))
    tensors = load_file(str(ckpt / "state.safetensors"))
    assert not [k for k in tensors if "_orig_mod" in k]
    out = run_stage("train", cfg_for(data, "compiled", *steps, "train.resume=true"))
    assert out["resumed_from_step"] == 2


def test_sample_grids_are_logged_to_mlflow_while_training(data):
    import mlflow

    out = run_stage("train", cfg_for(data, "grids", "train.steps=6", "train.grid_every=2"))
    mlflow.set_tracking_uri(f"sqlite:///{data}/mlflow.db")
    client = mlflow.MlflowClient()
    names = [a.path for a in client.list_artifacts(out["mlflow_run_id"], "images") if a.path.endswith(".png")]
    steps = sorted(int(n.split("+step+")[1].split("+")[0]) for n in names if "train_samples" in n)
    assert steps == [2, 4]  # the final step's grid is reports/train_samples.png


@pytest.mark.slow  # four trainings and an evaluate stage: the full layer
def test_baselines_train_beside_the_head_and_evaluate_ranks_them(data):
    import mlflow

    cfg = cfg_for(data, "base", "train.steps=3", "train.baselines=[resnet]")
    out = run_stage("train", cfg)
    models = data / "base" / "models"
    assert out["baselines"] == ["resnet"] and (models / "baselines" / "resnet" / "head" / "head.safetensors").exists()
    trained = json.loads((models / "baselines" / "baselines.json").read_text())
    assert trained["model"] == "esa_resnet" and list(trained["baselines"]) == ["resnet"]
    mlflow.set_tracking_uri(f"sqlite:///{data}/mlflow.db")
    child = mlflow.search_runs(experiment_names=["facerealism"],
                               filter_string=f"tags.mlflow.parentRunId = '{out['mlflow_run_id']}'")
    assert list(child["tags.mlflow.runName"]) == ["baseline resnet"]

    run_stage("evaluate", cfg)
    table = json.loads((data / "base" / "reports" / "table4.json").read_text())
    ranked = table["ranking"]["heads"]
    assert {r["head"] for r in ranked} == {"detail-gain ESA head (paired)", "detail-gain ResNet head (paired)"} and table["ranking"]["by"] == "fd_diff.spectral"
    assert ranked[0]["fd_diff.spectral"] >= ranked[1]["fd_diff.spectral"]
    metrics = json.loads((data / "base" / "reports" / "metrics.json").read_text())
    assert metrics["best_head"] == ranked[0]["head"]
    assert metrics["fd_diff.spectral"] == next(r for r in ranked if r["head"] == "detail-gain ESA head (paired)")["fd_diff.spectral"]

    assert cfg_for(data, "x", "train.baselines=[resnet, esa_resnet, resnet]").train.baseline_models == ["resnet"]


def test_train_bench_prints_fp32_bf16_and_channels_last_side_by_side():
    from facerealism.bench.train import bench

    r = bench(size=32, batch_size=1, steps=1, warmup=1, ngf=8, n_blocks=1, images=2)
    assert set(r) == {"fp32", "bf16", "bf16 channels_last"} and r["fp32"]["speedup"] == 1.0
    assert all(v["step_s"] > 0 and 0 <= v["data_wait_fraction"] < 1 for v in r.values())


@pytest.mark.slow  # a Prefect flow, subprocesses or full-size FLOPs: the full layer
def test_worker_processes_decode_batches_that_depend_only_on_the_step(data):
    from facerealism.data.split import split, to_tensor, validated_manifest
    from facerealism.files import load_rgb
    from facerealism.trainers.samplers import FileSampler

    cfg = cfg_for(data, "workers", "train.num_workers=2", "train.batch_size=3")
    rows, _ = split(validated_manifest(cfg.paths.data), cfg.split.holdout_fraction)
    full = FileSampler(rows, cfg, "cpu", 0, start=0)
    batches = [full.next() for _ in range(4)]
    resumed = FileSampler(rows, cfg, "cpu", 0, start=2)  # what a resume at micro-batch 2 builds
    for a, b in batches[2:]:
        ra, rb = resumed.next()
        assert torch.equal(a, ra) and torch.equal(b, rb)
    full.close(), resumed.close()
    a, b = batches[0]
    assert a.shape == b.shape == (3, 3, 32, 32) and not torch.equal(a, b)  # unpaired: independent draws
    ia, y, x, flip = resumed.jobs.jobs(0)[0][:4]  # the first sample, cropped by hand from its file
    want = to_tensor(load_rgb(rows["schnell_path"][ia])[None])[0, :, y:y + 32, x:x + 32]
    assert torch.equal(a[0], want.flip(-1) if flip else want)


@pytest.mark.slow  # a Prefect flow, subprocesses or full-size FLOPs: the full layer
def test_training_from_worker_processes_resumes_exactly(data):
    steps = ["train.num_workers=2", "train.steps=4", "train.checkpoint_every=2"]
    out = run_stage("train", cfg_for(data, "workers", *steps))
    assert 0 <= out["data_wait_fraction"] < 1
    first = head_weights(data / "workers" / "models")
    again = run_stage("train", cfg_for(data, "workers", *steps, "train.resume=true"))  # from the step-2 checkpoint
    assert again["resumed_from_step"] == 2
    second = head_weights(data / "workers" / "models")
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_low_pass_paired_term_ignores_the_texture_instance_but_not_the_content():
    """paired_lowpass_sigma: dev's texture is a new instance, so the plain L1 charges a head for every grain it adds
    (a copy of the target without texture scores better than one with another instance); blurred first, the term
    barely tells the two apart, and it still charges a wrong tone in full."""
    from facerealism.models.patchgan import lowpass
    from facerealism.trainers.cyclegan import shift_tolerant_l1

    g = torch.Generator().manual_seed(0)
    content = lowpass(torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, 3.0)
    dev = content + 0.1 * torch.randn(2, 3, 32, 32, generator=g)
    other_instance = content + 0.1 * torch.randn(2, 3, 32, 32, generator=g)

    def paired(out, sigma):
        return float(shift_tolerant_l1(lowpass(out, sigma), lowpass(dev, sigma), 1))

    assert paired(other_instance, 0) > 1.2 * paired(content, 0)  # plain: texture is punished
    assert paired(other_instance, 1.0) < 1.2 * paired(content, 1.0) + 0.005  # low-passed: hardly
    assert paired(content + 0.1, 1.0) > 3 * paired(other_instance, 1.0)  # a tone shift still costs


@pytest.mark.slow  # a subprocess building four CycleGANs
def test_recipe_bench_prints_each_recipe_beside_the_default_and_names_a_bad_variant():
    run = lambda *args: subprocess.run([sys.executable, "-m", "facerealism.bench.recipes", "--steps", "1",  # noqa: E731
                                        "--warmup", "0", *args], cwd=ROOT, env={**cli_env(), "COLUMNS": "200"}, capture_output=True,
                                       text=True, timeout=300)
    done = run("--variant", "slim=train.ngf=8,train.n_blocks=1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "default (params.yaml)" in done.stdout and "slim" in done.stdout and "1.00x" in done.stdout
    bad = run("--variant", "nothing-to-set")
    assert bad.returncode != 0 and "NAME=KEY=VALUE" in bad.stdout + bad.stderr


@pytest.mark.parametrize("omp, expected", [("1", 1), ("3", 3), ("", None), ("0", None), ("many", None)])
def test_threads_0_follows_omp_num_threads_where_set(monkeypatch, omp, expected):
    """train.threads 0 on a shared machine (pytest-xdist, a CI runner) keeps to OMP_NUM_THREADS; unset or unusable,
    every CPU this process may use."""
    from facerealism.stages.train import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert default_threads() == (expected or len(os.sched_getaffinity(0)))
