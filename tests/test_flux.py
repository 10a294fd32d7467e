"""The flux backend end to end on tiny random FLUX pipelines built locally (no weights, no hub)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facerealism.backends.flux import FluxBackend
from facerealism.backends.tiny_flux import build_tiny_flux
from facerealism.config import load_config
from facerealism.stages import run_stage

from .conftest import ROOT

PROMPTS = pd.DataFrame({
    "id": ["p0", "p1", "p2"],
    "prompt": ["A professional portrait of Ada Lovelace", "A professional portrait of 山田太郎",
               "A professional business portrait"],
    "seed": [11, 22, 33],
})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny FLUX ops are too small to split: on a shared 2-core machine two threads ran a 4-step
    32 px render in ~2 s instead of ~0.04 s (OpenMP threads waiting on each other)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Tiny schnell-like and dev-like pipelines (different random weights), saved once per module."""
    root = tmp_path_factory.mktemp("tiny_flux")
    return {
        "schnell": build_tiny_flux(root / "schnell", seed=0, variant="schnell"),
        "dev": build_tiny_flux(root / "dev", seed=10, variant="dev"),
    }


def flux_overrides(tiny: dict[str, Path], *extra: str) -> list[str]:
    return ["generate.backend=flux", "generate.size=32",
            f"generate.flux.fast_model={tiny['schnell']}", f"generate.flux.slow_model={tiny['dev']}", *extra]


def test_tiny_flux_is_a_standard_small_diffusers_directory(tiny):
    for variant, path in tiny.items():
        index = json.loads((path / "model_index.json").read_text())
        assert index["_class_name"] == "FluxPipeline"
        transformer = json.loads((path / "transformer" / "config.json").read_text())
        assert transformer["guidance_embeds"] is (variant == "dev")
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        assert size < 2_000_000, f"{variant}: {size} bytes"


def test_backend_renders_deterministic_uint8_pairs(tiny):
    cfg = load_config(ROOT / "params.yaml", flux_overrides(tiny, "generate.flux.batch_size=2"))
    backend = FluxBackend(cfg)
    pairs = list(backend.generate(PROMPTS))
    assert [p[0] for p in pairs] == list(PROMPTS["id"])  # order kept across a batch of 2 and a batch of 1
    for _, schnell, dev in pairs:
        for img in (schnell, dev):
            assert img.shape == (32, 32, 3) and img.dtype == np.uint8
            assert img.std() > 4.0  # not a blank frame
        assert not np.array_equal(schnell, dev)  # the slow model re-rendered the image
    assert not np.array_equal(pairs[0][1], pairs[1][1])  # different seeds and prompts, different images

    # A fresh backend (fresh load) renders the same pixels from the same seeds.
    again = list(FluxBackend(cfg).generate(PROMPTS))
    for (_, s1, d1), (_, s2, d2) in zip(pairs, again):
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(d1, d2)


def test_an_image_depends_on_its_seed_not_its_batch(tiny):
    # float32: bfloat16 kernels legitimately move pixels with the batch shape (see backends/flux.py).
    cfg = load_config(ROOT / "params.yaml", flux_overrides(tiny, "generate.flux.dtype=float32",
                                                           "generate.flux.slow_steps=8"))
    cfg.generate.flux.batch_size = 3
    batched = {i: (s, d) for i, s, d in FluxBackend(cfg).generate(PROMPTS)}
    cfg.generate.flux.batch_size = 1
    for pair_id, schnell, dev in FluxBackend(cfg).generate(PROMPTS.iloc[::-1]):
        assert np.abs(schnell.astype(int) - batched[pair_id][0]).max() <= 1
        assert np.abs(dev.astype(int) - batched[pair_id][1]).max() <= 1


def test_describe_records_the_generation_params(tiny):
    cfg = load_config(ROOT / "params.yaml", flux_overrides(tiny))
    spec = FluxBackend(cfg).describe()
    assert spec == {
        "size": 32, "fast_model": str(tiny["schnell"]), "slow_model": str(tiny["dev"]),
        "fast_steps": 4, "fast_guidance": 0.0, "max_sequence_length": 256,
        "strength": 0.7, "slow_steps": 50, "slow_guidance": 3.0, "dtype": "bfloat16", "vae_tiling": False,
    }
    # Throughput knobs do not change the spec, so changing them keeps finished pairs.
    bigger = load_config(ROOT / "params.yaml", flux_overrides(tiny, "generate.flux.batch_size=8"))
    assert FluxBackend(bigger).describe() == spec


def test_pipelines_load_once_per_backend(tiny, monkeypatch):
    from diffusers import FluxImg2ImgPipeline, FluxPipeline

    loads = []
    for cls in (FluxPipeline, FluxImg2ImgPipeline):
        real = cls.from_pretrained  # bound classmethod

        def counting(path, *args, _real=real, _name=cls.__name__, **kwargs):
            loads.append((_name, str(path)))
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", counting)
    backend = FluxBackend(load_config(ROOT / "params.yaml", flux_overrides(tiny, "generate.flux.slow_steps=4")))
    assert backend.fast_pipe is None and loads == []  # lazy: constructing loads nothing
    list(backend.generate(PROMPTS.iloc[:1]))
    fast, slow = backend.fast_pipe, backend.slow_pipe
    list(backend.generate(PROMPTS.iloc[1:]))
    assert backend.fast_pipe is fast and backend.slow_pipe is slow
    assert loads == [("FluxPipeline", str(tiny["schnell"])), ("FluxImg2ImgPipeline", str(tiny["dev"]))]


def test_same_fast_and_slow_model_shares_weights(tiny):
    cfg = load_config(ROOT / "params.yaml", flux_overrides(
        tiny, f"generate.flux.slow_model={tiny['schnell']}", "generate.flux.slow_steps=4"))
    backend = FluxBackend(cfg)
    [(_, schnell, dev)] = backend.generate(PROMPTS.iloc[:1])
    assert backend.slow_pipe.transformer is backend.fast_pipe.transformer
    # from_pipe must not cast the shared modules to float32 behind the config's back.
    assert str(backend.fast_pipe.transformer.dtype) == "torch.bfloat16"
    assert schnell.shape == dev.shape == (32, 32, 3)


@pytest.mark.parametrize("which", ["missing", "no_model_index", "no_transformer", "hub_id"])
def test_unloadable_weights_raise_one_actionable_line(tiny, tmp_path, which):
    import shutil

    model = {
        "missing": str(tmp_path / "no-such-dir"),
        "no_model_index": str(tmp_path),  # exists, but is not a diffusers pipeline directory
        "no_transformer": str(tmp_path / "broken"),
        "hub_id": "black-forest-labs/FLUX.1-does-not-exist",  # not cached; the hub is unreachable here
    }[which]
    if which == "no_transformer":
        shutil.copytree(tiny["dev"], model)
        shutil.rmtree(Path(model) / "transformer")
    cfg = load_config(ROOT / "params.yaml", flux_overrides(tiny, f"generate.flux.slow_model={model}"))
    backend = FluxBackend(cfg)  # construction is cheap and lazy: the error comes with the first render
    with pytest.raises(ValueError) as err:
        list(backend.generate(PROMPTS.iloc[:1]))
    msg = str(err.value)
    assert model in msg and "generate.flux.slow_model=" in msg and "\n" not in msg
    if which == "no_transformer":
        assert "['transformer']" in msg


def test_size_must_fit_the_vae_and_patch_grid(tiny):
    backend = FluxBackend(load_config(ROOT / "params.yaml", flux_overrides(tiny, "generate.size=40")))
    with pytest.raises(ValueError, match="multiple of 16"):
        list(backend.generate(PROMPTS.iloc[:1]))


def test_cpu_offload_without_cuda_is_refused(tiny):
    cfg = load_config(ROOT / "params.yaml", flux_overrides(
        tiny, "generate.flux.cpu_offload=true", "generate.flux.device=cpu"))
    with pytest.raises(ValueError, match="cpu_offload"):
        FluxBackend(cfg)


def _run_prompts_generate_validate(cfg) -> tuple[pd.DataFrame, dict]:
    run_stage("prompts", cfg)
    run_stage("generate", cfg)
    summary = run_stage("validate", cfg)
    return pd.read_parquet(Path(cfg.paths.data) / "pairs" / "manifest.parquet"), summary


def test_generate_validate_audit_with_flux_backend(tiny, tmp_path):
    cfg = load_config(ROOT / "params.yaml", flux_overrides(
        tiny, "generate.flux.slow_steps=4", "prompts.n_enriched=4", "prompts.n_baseline=0",
        "validate.face_check_backends=[]",  # tiny random FLUX renders noise, never a face
        f"paths.data={tmp_path}/data", f"paths.reports={tmp_path}/reports"))
    manifest, summary = _run_prompts_generate_validate(cfg)
    assert len(manifest) == 4 and (manifest["backend"] == "flux").all()
    params = json.loads(manifest["params"].iloc[0])
    assert params["slow_steps"] == 4 and params["fast_steps"] == 4 and params["strength"] == 0.7
    # Random tiny-FLUX images have a pixel std ~40, far above validate.min_std (4): no override needed.
    assert summary["passed"] and summary["valid"] == 4
    # The dev-vs-schnell checks ran on these pairs and passed them, for what random weights render: dev repaints
    # schnell into unrelated texture (SSIM ~0.1), neither hazy nor washed out nor a copy. That says nothing about
    # real FLUX's img2img at strength 0.7; the planted hazy/copied pairs of test_validate.py show the checks bite.
    assert summary["pair_checked_pairs"] == 4
    rel = json.loads((Path(cfg.paths.reports) / "validation.json").read_text())["pair_relations"]
    v = cfg.validate_
    assert rel["pair_sharpness_ratio"]["min"] > v.min_sharpness_ratio
    assert rel["pair_contrast_ratio"]["min"] > v.min_contrast_ratio
    assert rel["pair_ssim"]["max"] < 0.5 < v.max_pair_ssim
    # The audit's perceived gender/age networks get no face from random weights, and say so per prompt set
    # (the audit's own function on its own input; the whole stage's MLflow and t-SNE cost ~20 s more here).
    from facerealism.stages.audit import attribute_cell, perceived_attributes

    validated = pd.read_parquet(Path(cfg.paths.data) / "validated.parquet")
    prompts = pd.read_parquet(Path(cfg.paths.data) / "prompts.parquet")
    a = perceived_attributes(cfg, prompts.merge(validated[["id", "dev_path"]], on="id"), "dev_path")
    assert a["available"] and a["templates"] == {"enriched": {"images": 4, "faces": 0}}
    assert attribute_cell(a, "enriched", "gender") == "no face found in 4 dev images"


def test_paper_params_with_tiny_flux_produce_a_valid_manifest(tiny, tmp_path):
    """Acceptance: `stage generate` with params.paper.yaml and a tiny-flux model directory."""
    cfg = load_config(ROOT / "params.paper.yaml", [
        f"generate.flux.fast_model={tiny['schnell']}", f"generate.flux.slow_model={tiny['dev']}",
        "generate.size=32", "train.crop=32",  # the paper's crop (512) may not exceed the image size
        "generate.flux.slow_steps=6", "prompts.n_enriched=3", "prompts.n_baseline=2",
        "validate.face_check_backends=[]",  # tiny random FLUX renders noise, never a face
        f"paths.data={tmp_path}/data", f"paths.reports={tmp_path}/reports",
    ])
    assert cfg.generate.flux.batch_size == 4  # the paper's batch: 5 prompts make a full and a partial batch
    manifest, summary = _run_prompts_generate_validate(cfg)
    assert len(manifest) == 5 and (manifest["backend"] == "flux").all()
    params = json.loads(manifest["params"].iloc[0])
    assert params["dtype"] == "bfloat16" and params["slow_guidance"] == 3.0 and params["max_sequence_length"] == 256
    assert summary["passed"] and summary["quarantined"] == 0


def test_reference_renders_the_slow_model_from_scratch(tiny):
    """FID_dev reference images: slow-model text-to-image, sharing the slow pipeline's weights, no schnell input."""
    cfg = load_config(ROOT / "params.yaml", flux_overrides(tiny, "generate.flux.slow_steps=4",
                                                           "generate.flux.dtype=float32"))
    backend = FluxBackend(cfg)
    [(pid, schnell, dev)] = backend.generate(PROMPTS.iloc[:1])
    [(rid, ref)] = backend.reference(PROMPTS.iloc[:1])
    assert rid == pid and ref.shape == (32, 32, 3) and ref.dtype == np.uint8 and ref.std() > 4.0
    assert type(backend.ref_pipe).__name__ == "FluxPipeline"
    assert backend.ref_pipe.transformer is backend.slow_pipe.transformer
    assert not np.array_equal(ref, dev) and not np.array_equal(ref, schnell)
    [(_, again)] = FluxBackend(cfg).reference(PROMPTS.iloc[:1])
    np.testing.assert_array_equal(ref, again)  # seeded like the pairs


def test_flux_bench_times_reload_once_and_batched_on_the_same_pairs(tiny):
    from facerealism.bench.flux import measure

    r = measure(tiny["schnell"], tiny["dev"], pairs=2, size=32, batches=(1, 2))
    assert set(r) == {"loaded_once", "batched", "reloaded_per_pair", "load_s", "render_s"}
    assert set(r["batched"]) == {1, 2} and all(v > 0 for v in r["batched"].values())
    assert all(r[k] > 0 for k in ("loaded_once", "reloaded_per_pair", "render_s"))
    assert r["load_s"] > 0.01  # a reload really re-reads both pipelines


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> dict[str, Path]:
    """Like the real pair: different transformers, byte-identical text encoders, tokenizers and VAE."""
    root = tmp_path_factory.mktemp("tiny_flux_family")
    return {"schnell": build_tiny_flux(root / "schnell", seed=0, variant="schnell", shared_seed=0),
            "dev": build_tiny_flux(root / "dev", seed=10, variant="dev", shared_seed=0)}


def test_slow_model_reuses_the_fast_models_identical_encoders_and_vae(family, tiny):
    shared = FluxBackend(load_config(ROOT / "params.yaml", flux_overrides(family, "generate.flux.dtype=float32")))
    apart = FluxBackend(load_config(ROOT / "params.yaml", flux_overrides(
        family, "generate.flux.dtype=float32", "generate.flux.share_components=false")))
    for b in (shared, apart):
        b.load()
    for name in ("text_encoder", "text_encoder_2", "vae"):
        assert getattr(shared.slow_pipe, name) is getattr(shared.fast_pipe, name)
        assert getattr(apart.slow_pipe, name) is not getattr(apart.fast_pipe, name)
    assert shared.slow_pipe.transformer is not shared.fast_pipe.transformer
    # One copy renders exactly what two copies of the same weights render.
    for (_, s1, d1), (_, s2, d2) in zip(shared.generate(PROMPTS), apart.generate(PROMPTS)):
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(d1, d2)
    # Different weights are never shared (the `tiny` pair has its own encoders per model; tokenizers are equal).
    other = FluxBackend(load_config(ROOT / "params.yaml", flux_overrides(tiny)))
    other.load()
    assert other.slow_pipe.text_encoder_2 is not other.fast_pipe.text_encoder_2
    assert other.slow_pipe.vae is not other.fast_pipe.vae


def hub_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay `folder` out as huggingface_hub caches a download: blobs named by content hash, a snapshot of symlinks."""
    import hashlib
    import os

    from facerealism.files import sha256_file

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = repo / "blobs" / sha256_file(f)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(f.read_bytes())
        link = repo / "snapshots" / revision / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


@pytest.mark.slow  # subprocesses or servers: the full layer, not the inner loop
def test_hub_ids_load_offline_from_the_cache_and_share_cached_blobs(family, tmp_path):
    """The production path: model ids resolved in the local Hugging Face cache (HF_HUB_OFFLINE), where identical
    files are recognised by their blob names without hashing."""
    import os
    import subprocess

    from .conftest import cli_env

    cache = tmp_path / "hub"
    hub_cache(cache, "tiny-org/FLUX.1-schnell", family["schnell"])
    hub_cache(cache, "tiny-org/FLUX.1-dev", family["dev"])
    script = (
        "import json; from facerealism.backends.flux import FluxBackend, identical_components; "
        "from facerealism.config import load_config; import pandas as pd; "
        "cfg = load_config('params.yaml', ['generate.backend=flux', 'generate.size=32', "
        "'generate.flux.fast_model=tiny-org/FLUX.1-schnell', 'generate.flux.slow_model=tiny-org/FLUX.1-dev']); "
        "b = FluxBackend(cfg); rows = pd.DataFrame({'id': ['a'], 'prompt': ['A portrait'], 'seed': [1]}); "
        "[(_, s, d)] = b.generate(rows); "
        "print('RESULT', json.dumps({'shared': identical_components('tiny-org/FLUX.1-schnell', 'tiny-org/FLUX.1-dev'),"
        " 'same_t5': b.slow_pipe.text_encoder_2 is b.fast_pipe.text_encoder_2, 'shape': list(d.shape)}))")
    env = {**cli_env(), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([os.sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result == {"shared": ["text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae"],
                      "same_t5": True, "shape": [32, 32, 3]}


def test_diffusers_backend_shares_identical_components_too(family):
    from facerealism.backends.diffusers import DiffusersBackend

    def backend(*extra):
        b = DiffusersBackend(load_config(ROOT / "params.yaml", [
            "generate.backend=diffusers", "generate.size=32", f"generate.diffusers.fast_model={family['schnell']}",
            f"generate.diffusers.slow_model={family['dev']}", *extra]))
        b.load()
        return b

    shared, apart = backend(), backend("generate.diffusers.share_components=false")
    assert shared.slow_pipe.text_encoder_2 is shared.fast_pipe.text_encoder_2
    assert shared.slow_pipe.vae is shared.fast_pipe.vae and shared.slow_pipe.transformer is not shared.fast_pipe.transformer
    assert apart.slow_pipe.text_encoder_2 is not apart.fast_pipe.text_encoder_2
