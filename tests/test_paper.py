"""The paper's profile end to end: `facerealism run --params params.paper.yaml` with scale overrides only, on tiny
FLUX folders built here, through all eight stages; what was trained is checked against the paper's recipe."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import torch

from facerealism.backends.tiny_flux import build_tiny_flux
from facerealism.config.architectures import recipe

from .conftest import ROOT, cli_env

# Scale only: how many prompts and pixels, how wide the nets, how many steps and resamples, and the tiny profile's
# permissive gate (a 4-step head is not expected to be good). Nothing of the recipe: model, output, losses, their
# weights, lr, batch size and schedule shape stay params.paper.yaml's.
SCALE = [
    "generate.size=32", "prompts.n_enriched=24", "prompts.n_baseline=4", "split.holdout_fraction=0.25",
    "validate.face_check_backends=[]",  # tiny random FLUX renders noise, never a face
    "train.ngf=8", "train.n_blocks=2", "train.ndf=8", "train.steps=4", "train.log_every=1",
    "train.num_workers=1",  # one decode process: the profile's 8 would crowd 2 cores
    "evaluate.bootstrap=10", "evaluate.c2st_folds=2", "evaluate.grid_n=4",
    "evaluate.controls=[RGB noise σ16, unsharp r2 200%]",
    "benchmark.sizes=[32]", "benchmark.repeats=1", "benchmark.batch_size=1", "benchmark.compile=false",
    "benchmark.flops_size=256", "benchmark.pipeline_sizes=[32]", "benchmark.pipeline_repeats=1",
    "register.required={fd_diff.spectral: -1.0e9}", "register.below={}", "register.check_controls=false",
]


def test_recipe_names_are_truthful():
    assert recipe({"model": "esa_resnet", "residual_output": False, "detail": False, "lambda_paired": 0}).label \
        == "ESA-CycleGAN"
    default = recipe({"model": "esa_resnet", "residual_output": True, "detail": True, "lambda_paired": 100})
    assert (default.id, default.label) == ("esa_detail_paired", "detail-gain ESA head (paired)")
    # Anything but the paper's unpaired tanh recipe is named for what it is, never "ESA-CycleGAN".
    for residual, detail, paired in ((True, False, 0), (False, False, 10), (True, True, 0), (True, False, 10)):
        r = recipe({"model": "esa_resnet", "residual_output": residual, "detail": detail, "lambda_paired": paired})
        assert "CycleGAN" not in r.label and r.id != "esa_cyclegan", r
    # ... nor is the paper's recipe with another critic.
    other = recipe({"model": "esa_resnet", "residual_output": False, "detail": False, "lambda_paired": 0,
                    "discriminator": "patchgan_highpass"})
    assert other.id != "esa_cyclegan" and other.label == "ESA-CycleGAN with a patchgan_highpass critic"
    # ... nor with an identity term, which the paper's unpaired method does not have.
    paper = {"model": "esa_resnet", "residual_output": False, "detail": False, "lambda_paired": 0, "lambda_idt": 0.0}
    assert recipe(paper).id == "esa_cyclegan"
    idt = recipe({**paper, "lambda_idt": 5.0})
    assert (idt.id, idt.label) == ("esa_cyclegan_identity", "ESA-CycleGAN + identity term (λ_idt 5)")
    assert recipe({**paper, "lambda_idt": 5.0, "discriminator": "patchgan_highpass"}).id \
        == "esa_cyclegan_identity_patchgan_highpass"


def test_the_model_card_calls_only_the_papers_recipe_the_papers_method():
    from facerealism.config import load_config
    from facerealism.mlops.card import model_card

    cfg = load_config(ROOT / "params.yaml")
    paper = {"model": "esa_resnet", "residual_output": False, "detail": False, "lambda_paired": 0, "lambda_idt": 0.0}
    cards = {idt: model_card(cfg, {"arch": "esa_resnet", "config": {"train": {**paper, "lambda_idt": idt}}}, {}, {})
             for idt in (0.0, 2.5)}
    assert "the paper's unpaired method" in cards[0.0]
    assert "the paper's unpaired method" not in cards[2.5] and "+ identity term (λ_idt 2.5)" in cards[2.5]


@pytest.mark.slow
def test_paper_profile_runs_all_eight_stages_and_trains_the_papers_recipe(tmp_path):
    for name in ("params.yaml", "params.paper.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    schnell = build_tiny_flux(tmp_path / "flux/schnell", seed=0, variant="schnell")
    dev = build_tiny_flux(tmp_path / "flux/dev", seed=10, variant="dev")
    overrides = [*SCALE, f"generate.flux.fast_model={schnell}", f"generate.flux.slow_model={dev}",
                 f"paths.mlflow_uri=sqlite:///{tmp_path}/mlflow.db", f"paths.mlflow_artifacts={tmp_path}/mlartifacts"]
    env = {**cli_env(), "OMP_NUM_THREADS": "1"}  # tiny ops: threads only wait on each other on 2 shared cores
    res = subprocess.run(["facerealism", "run", "--params", "params.paper.yaml",
                          *(a for o in overrides for a in ("--set", o))],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    for stage in ("prompts", "generate", "validate", "audit", "train", "evaluate", "benchmark", "register"):
        assert stage in res.stdout
    manifest_backend = json.loads((tmp_path / "reports/promotion.json").read_text())
    assert manifest_backend["version"] == "1"

    # What was trained: the paper's generator (ESA after each residual block, tanh output, no detail head) ...
    from facerealism.head import load_head
    from facerealism.models.esa_cyclegan import ESA

    G, meta = load_head(tmp_path / "models/head")
    t = meta["config"]["train"]
    assert meta["arch"] == "esa_resnet" and meta["kwargs"] == {"ngf": 8, "n_blocks": 2, "residual_output": False}
    assert sum(isinstance(m, ESA) for m in G.modules()) == 2 and G.luma_detail is None
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(G(x), torch.tanh(G.out_conv(G.body(x))))  # the output is tanh of the body: no residual
    # ... trained by LSGAN + cycle terms alone, lambda_cyc 2, lr 1e-4, batch 4, on whole images.
    assert (t["lambda_cyc"], t["lr"], t["lambda_paired"], t["lambda_idt"], t["batch_size"], t["crop"]) \
        == (2.0, 1e-4, 0.0, 0.0, 4, None)
    assert meta["loss_terms"] == ["D_A", "G_A", "cycle_A", "D_B", "G_B", "cycle_B"]
    history = json.loads((tmp_path / "reports/train.json").read_text())["history"]
    assert history[0]["lr"] == pytest.approx(1e-4)
    assert all({"G_A", "cycle_A", "D_A"} <= set(h) and not {"paired_A", "idt_A"} & set(h) for h in history)
    assert meta["recipe"] == "esa_cyclegan" and meta["recipe_label"] == "ESA-CycleGAN"

    # Its name where a person reads it: Table 4, the MLflow run and registered version, the model card.
    table = json.loads((tmp_path / "reports/table4.json").read_text())
    assert table["head_label"] == "ESA-CycleGAN"
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)  # not whatever registry this process set
    mv = client.get_model_version("facerealism-head", "1")
    assert mv.tags["recipe"] == "esa_cyclegan" and mv.tags["recipe_label"] == "ESA-CycleGAN"
    assert "Recipe: ESA-CycleGAN" in mv.description and "the paper's unpaired method" in mv.description
    run = client.get_run(meta["mlflow_run_id"])
    assert run.data.tags["facerealism.recipe"] == "esa_cyclegan"
    assert run.data.params["train.lambda_cyc"] == "2.0" and run.data.params["train.lr"] == "0.0001"


def untagged_values(text: str) -> list[str]:
    """Lines of a profile that set a value without saying whose it is ([paper] or [project] in its comment)."""
    out = []
    for line in text.splitlines():
        code, _, comment = line.partition("#")
        key, sep, value = code.partition(":")
        if sep and line[:1].isspace() and value.strip() and not re.search(r"\[(paper|project)\]", comment):
            out.append(key.strip())
    return out


def test_the_paper_profile_marks_each_value_as_the_papers_or_the_projects():
    text = (ROOT / "params.paper.yaml").read_text()
    assert untagged_values(text) == []
    header = text.split("extends:")[0]
    assert "Faker" in header and "IMDb" in header and "gate" in header  # what it inherits is the project's, said once
    # the recipe the paper states is marked as the paper's
    for key in ("lambda_cyc", "lr", "residual_output", "lambda_paired", "lambda_idt"):
        assert re.search(rf"^  {key}: .*# \[paper\]", text, re.M), key
    # the check can fail
    assert untagged_values("train:\n  lr: 0.1  # the paper's\n  steps: 5  # [project]\n") == ["lr"]
