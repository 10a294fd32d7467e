"""Each preset (facerealism.presets) renders pairs through its real pipeline classes, on tiny models of its
architecture; the registry finds every preset folder and everything that lists presets reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facerealism import presets
from facerealism.backends import build_backend
from facerealism.backends.diffusers import denoiser
from facerealism.config import load_config

from .conftest import ROOT

ROWS = pd.DataFrame({"id": ["p0", "p1"], "prompt": ["A professional portrait of Ada Lovelace",
                                                    "A professional portrait of Alan Turing"], "seed": [11, 12]})
SLOW_STEPS = 10  # the presets' 28-50 slow steps cut to 10: at strength 0.7, 7 denoising steps run
# Denoiser calls per image at the presets' own fast settings and SLOW_STEPS: (fast, slow). FLUX.2 klein Base runs
# classifier-free guidance as a second transformer call per step; SD3, SDXL and Z-Image batch it into one call.
CALLS = {"flux2-klein-4b": (4, 14), "z-image": (8, 7), "sd35-large": (4, 7), "dmd2-sdxl": (1, 7),
         "sdxl-lightning-lora": (4, 7)}


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory):
    """name -> generate.diffusers overrides pointing the preset at tiny local models (each built once per session)."""
    import torch

    built: dict[str, dict] = {}
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops are too small to split across threads

    def get(name: str) -> dict:
        if name not in built:
            built[name] = presets.get(name).build_tiny(tmp_path_factory.mktemp(name), 0)
        return built[name]

    yield get
    torch.set_num_threads(before)


def preset_cfg(name: str, models: dict, **extra):
    """The preset file as shipped, at 32 px, float32 on CPU, on the tiny models, slow steps cut to SLOW_STEPS."""
    cfg = load_config(presets.get(name).params, ["generate.size=32", "generate.diffusers.dtype=float32",
                                                  "generate.diffusers.device=cpu"])
    d = cfg.generate.diffusers
    d.slow_kwargs = {**d.slow_kwargs, "num_inference_steps": SLOW_STEPS}
    for key, value in {**models, **extra}.items():
        setattr(d, key, value)
    return cfg


def test_every_preset_folder_is_registered_loads_and_has_a_tiny_build():
    folders = sorted(p.parent.name for p in presets.ROOT.glob("*/__init__.py"))
    assert [n.replace("-", "_") for n in presets.names()] == folders
    assert presets.names() == sorted(CALLS)  # each preset's denoiser calls are checked below
    for name, preset in presets.registry().items():
        cfg = load_config(preset.params)
        assert cfg.generate.backend == "diffusers" and cfg.generate.size == 1024
        assert callable(preset.build_tiny) and callable(preset.tiny_components) and preset.licence
        assert set(preset.distilled) <= {"fast", "slow"}
    with pytest.raises(Exception, match=r"unknown preset 'nope'; known: \['dmd2-sdxl'"):
        presets.get("nope")


def test_each_architecture_config_lives_in_one_folder_and_builds():
    configs = presets.config_files()
    stems = [p.stem for p in configs]
    assert len(stems) == len(set(stems)), "an architecture config in two preset folders"
    # every config is built by some preset's family, and every family's configs are shipped
    by_preset = {p.folder.name: {p.family.denoiser, p.family.vae, *p.family.encoders}
                 for p in presets.registry().values()}
    assert set().union(*by_preset.values()) == set(stems)
    # shared/ holds only what two or more presets build; a preset folder only what its own family builds
    for path in configs:
        users = [folder for folder, names in by_preset.items() if path.stem in names]
        assert (path.parent.name == "shared") == (len(users) > 1) and (len(users) > 1 or path.parent.name in users), \
            (path, users)


def test_a_new_preset_is_one_folder(tmp_path, monkeypatch):
    """A folder with PRESET and params.yaml (here: SD3.5's family and tiny builder, other models) is found by the
    registry, the CLI, the FLOPs model and the GPU kit, with nothing else edited."""
    import facerealism.presets as registry_module
    from facerealism.bench.presets import _tiny_components
    from facerealism.cli import params_file
    from facerealism.presets import sd35_large
    from facerealism.scoring.table4 import references

    folder = tmp_path / "my_pair"
    folder.mkdir()
    (folder / "params.yaml").write_text(presets.get("sd35-large").params.read_text().replace(
        "stabilityai/stable-diffusion-3.5-large-turbo", "me/my-fast-model"))
    (folder / "__init__.py").write_text(
        "from facerealism.presets.preset import Preset\n"
        "from facerealism.presets.sd35_large import SD35, build_tiny, tiny_components\n"
        "PRESET = Preset(name='my-pair', family=SD35, models=('my fast', 'my slow'), summary='mine -> SD3.5 Large',\n"
        "                licence='mine', tiny_components=tiny_components, build_tiny=build_tiny)\n")
    monkeypatch.setattr(registry_module, "__path__", [*registry_module.__path__, str(tmp_path)])
    registry_module.registry.cache_clear()
    try:
        assert "my-pair" in presets.names() and presets.get("my-pair").family is sd35_large.SD35
        assert params_file(Path("presets/my-pair.yaml")) == folder / "params.yaml"
        cfg = load_config(params_file(Path("presets/my-pair.yaml")))
        assert references(cfg) == ("my fast", "my slow")
        comps = _tiny_components(presets.get("my-pair"))
        assert comps["fast"]["transformer"] is not comps["slow"]["transformer"]
    finally:
        registry_module.registry.cache_clear()


def test_the_cli_finds_a_preset_by_its_old_path_and_the_docs_table_lists_every_preset():
    from facerealism.cli import params_file

    for name in presets.names():
        assert params_file(Path(f"presets/{name}.yaml")) == params_file(Path(name)) == presets.get(name).params
    assert params_file(Path("params.yaml")) == Path("params.yaml")
    doc = (ROOT / "docs" / "gpu-and-presets.md").read_text()
    rows = [line.split("|")[1].strip().strip("`") for line in doc.splitlines() if line.startswith("| `")]
    assert rows == [n for n in rows if n in presets.registry()] and sorted(rows) == presets.names()
    import json

    flops = {r["preset"]: r for r in json.loads((ROOT / "reports" / "preset_flops.json").read_text())["rows"]
             if r["size"] == 1024}  # `facerealism preset-flops`: the table's last two columns
    assert sorted(flops) == presets.names()
    for name, preset in presets.registry().items():  # its summary and licence are the registry's
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| {preset.summary} | {preset.licence} |" in row, row
        pct = [float(cell) for cell in row.strip("| ").split(" | ")[-2:]]
        assert pct == pytest.approx([flops[name]["fast_pct_of_slow_t2i"],
                                     flops[name]["fast_plus_slow_i2i_pct_of_slow_t2i"]], abs=0.051), row


@pytest.mark.parametrize("name", sorted(CALLS))
def test_preset_renders_reproducible_pairs_sharing_modules_with_counted_denoiser_calls(name, tiny_preset):
    models = tiny_preset(name)
    cfg = preset_cfg(name, models)
    backend = build_backend(cfg)
    pairs = list(backend.generate(ROWS))
    assert [p[0] for p in pairs] == ["p0", "p1"]
    for _, fast, slow in pairs:
        assert fast.shape == slow.shape == (32, 32, 3) and fast.dtype == slow.dtype == np.uint8
        assert not np.array_equal(fast, slow)
    assert not np.array_equal(pairs[0][1], pairs[1][1])  # another prompt and seed, another image

    # The preset's own pipeline classes ran, sharing the pair's text encoder(s) and VAE as one set of modules.
    fast_pipe, slow_pipe = backend.fast_pipe, backend.slow_pipe
    c = cfg.generate.diffusers
    assert (type(fast_pipe).__name__, type(slow_pipe).__name__) == (c.fast_pipeline, c.slow_pipeline)
    shared = [k for k in ("text_encoder", "text_encoder_2", "text_encoder_3", "vae") if hasattr(fast_pipe, k)]
    assert shared and all(getattr(fast_pipe, k) is getattr(slow_pipe, k) for k in shared)
    if not c.fast_lora:  # the denoisers are the two models' own (the LoRA preset shares one base, see below)
        assert denoiser(fast_pipe) is not denoiser(slow_pipe)

    # Denoiser calls per image: the fast model's steps, and the slow model's steps x strength (x2 with separate CFG).
    assert backend.calls_per_image() == dict(zip(("fast", "slow"), map(float, CALLS[name])))

    # The same seeds give the same pairs from a freshly loaded backend.
    again = list(build_backend(cfg).generate(ROWS))
    assert all(np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2]) for a, b in zip(pairs, again))


def test_dmd2_swaps_only_the_fast_unet_and_steps_once_at_timestep_399(tiny_preset):
    from diffusers import LCMScheduler

    models = tiny_preset("dmd2-sdxl")
    backend = build_backend(preset_cfg("dmd2-sdxl", models))
    [(_, fast, _), _] = backend.generate(ROWS)
    f, s = backend.fast_pipe, backend.slow_pipe
    assert isinstance(f.scheduler, LCMScheduler) and type(s.scheduler).__name__ == "EulerDiscreteScheduler"
    assert f.scheduler.timesteps.tolist() == [399]
    assert f.unet is not s.unet and f.text_encoder_2 is s.text_encoder_2
    # The slow UNet is the base folder's; the fast one is the state-dict file's.
    from safetensors.torch import load_file

    state = load_file(models["fast_unet"])
    key = "conv_in.weight"
    assert np.array_equal(f.unet.state_dict()[key].numpy(), state[key].numpy())
    assert not np.array_equal(s.unet.state_dict()[key].numpy(), state[key].numpy())
    # Without the swapped UNet the base renders another fast image.
    plain = build_backend(preset_cfg("dmd2-sdxl", models, fast_unet=None))
    assert not np.array_equal(next(iter(plain.generate(ROWS.iloc[:1])))[1], fast)


def test_lightning_lora_is_on_for_the_fast_pass_only_over_one_base(tiny_preset):
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline

    models = tiny_preset("sdxl-lightning-lora")
    cfg = preset_cfg("sdxl-lightning-lora", models)
    backend = build_backend(cfg)
    [(_, fast, slow)] = backend.generate(ROWS.iloc[:1])
    assert backend.fast_pipe.unet is backend.slow_pipe.unet  # one copy of the base weights
    assert backend.fast_pipe.scheduler.config.timestep_spacing == "trailing"
    # The LoRA changes the fast image ...
    plain = build_backend(preset_cfg("sdxl-lightning-lora", models, fast_lora=None))
    [(_, fast_plain, _)] = plain.generate(ROWS.iloc[:1])
    assert not np.array_equal(fast, fast_plain)
    # ... and the slow pass is the plain base's img2img of that fast image, as if no LoRA had been loaded.
    from PIL import Image

    base = StableDiffusionXLImg2ImgPipeline.from_pretrained(models["slow_model"])
    base.set_progress_bar_config(disable=True)
    c = cfg.generate.diffusers
    ref = base(prompt=[ROWS["prompt"][0]], image=[Image.fromarray(fast)], strength=c.strength, height=32, width=32,
               generator=[torch.Generator("cpu").manual_seed(int(ROWS["seed"][0]))], output_type="np",
               **c.slow_kwargs).images[0]
    assert np.array_equal(np.asarray(Image.fromarray((ref * 255).round().astype(np.uint8))), slow)


def test_a_fast_unet_that_is_not_there_is_named(tiny_preset, tmp_path):
    from facerealism.errors import UserError

    cfg = preset_cfg("dmd2-sdxl", {**tiny_preset("dmd2-sdxl"), "fast_unet": str(tmp_path / "nope.safetensors")})
    with pytest.raises(UserError, match=r"generate.diffusers.fast_unet: no such file or folder .*nope.safetensors"):
        build_backend(cfg).load()


def test_an_unknown_pipeline_class_is_named(tiny_preset):
    from facerealism.errors import UserError

    cfg = preset_cfg("sd35-large", tiny_preset("sd35-large"), slow_pipeline="NoSuchPipeline")
    with pytest.raises(UserError, match=r"generate.diffusers.slow_pipeline: 'NoSuchPipeline' is not a diffusers "):
        build_backend(cfg).load()


@pytest.mark.parametrize("name", sorted(CALLS))
def test_the_reference_set_is_the_slow_models_text_to_image_on_every_preset(name, tiny_preset):
    # FID_dev's reference (generate.reference_count > 0): the slow model from scratch. FLUX.2 klein's slow pipeline
    # is an inpaint pipeline, which no AutoPipelineForText2Image maps; its text-to-image sibling must be used.
    backend = build_backend(preset_cfg(name, tiny_preset(name)))
    refs = list(backend.reference(ROWS))
    assert [r[0] for r in refs] == ["p0", "p1"] and all(r[1].shape == (32, 32, 3) for r in refs)
    ref_pipe, slow_pipe = backend.ref_pipe, backend.slow_pipe
    assert "Inpaint" not in type(ref_pipe).__name__ and "Img2Img" not in type(ref_pipe).__name__
    assert denoiser(ref_pipe) is denoiser(slow_pipe)  # the slow model's own weights, not a second copy
    # from scratch: every slow step runs (x2 where CFG is a second call), not strength x steps
    assert backend.calls_per_image()["reference"] == SLOW_STEPS * CALLS[name][1] / 7
