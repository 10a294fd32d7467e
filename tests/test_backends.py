"""The backend registry: one list of names, one interface, and a fast render equal to the pair's fast half."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd
import pytest

from facerealism.backends import BACKENDS, Backend, build_backend
from facerealism.config import GenerateConfig, load_config
from facerealism.errors import UserError

from .conftest import ROOT

ROW = pd.DataFrame({"id": ["p0"], "prompt": ["A professional portrait of Ada Lovelace"], "seed": [11]})


@pytest.fixture(scope="module")
def tiny_schnell(tmp_path_factory) -> Path:
    import torch

    from facerealism.backends.tiny_flux import build_tiny_flux

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny FLUX ops are too small to split across threads
    yield build_tiny_flux(tmp_path_factory.mktemp("tiny_flux") / "schnell", seed=0, variant="schnell")
    torch.set_num_threads(before)


def backend_cfg(name: str, tiny_schnell: Path | None = None):
    """size 32, float32 on CPU; the FLUX-based backends use the tiny schnell as both models (one set of weights)."""
    extra = {"synthetic": [],
             "flux": [f"generate.flux.fast_model={tiny_schnell}", f"generate.flux.slow_model={tiny_schnell}",
                      "generate.flux.dtype=float32", "generate.flux.device=cpu"],
             "diffusers": [f"generate.diffusers.fast_model={tiny_schnell}",
                           f"generate.diffusers.slow_model={tiny_schnell}", "generate.diffusers.dtype=float32",
                           "generate.diffusers.device=cpu",
                           "generate.diffusers.fast_kwargs={num_inference_steps: 2, guidance_scale: 0.0}",
                           "generate.diffusers.slow_kwargs={num_inference_steps: 2}"]}[name]
    return load_config(ROOT / "params.yaml", [f"generate.backend={name}", "generate.size=32", "train.crop=32", *extra])


def test_the_registry_names_the_config_choices_and_refuses_others_listing_them():
    assert set(BACKENDS) == set(get_args(GenerateConfig.model_fields["backend"].annotation))
    cfg = load_config(ROOT / "params.yaml", [])
    unknown = cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"backend": "nope"})})
    with pytest.raises(UserError, match=r"unknown backend 'nope'; known: \['diffusers', 'flux', 'synthetic'\]"):
        build_backend(unknown)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_registered_backend_satisfies_the_protocol_under_its_name(name):
    backend = build_backend(backend_cfg(name, Path("/never/loaded")))  # construction loads no model
    assert isinstance(backend, Backend) and backend.name == name
    assert backend.describe()["size"] == 32


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_the_fast_render_is_the_fast_half_of_the_pair_for_the_same_prompt_and_seed(name, request):
    tiny = request.getfixturevalue("tiny_schnell") if name != "synthetic" else None
    cfg = backend_cfg(name, tiny)
    [(pair_id, schnell, dev)] = build_backend(cfg).generate(ROW)
    fast = build_backend(cfg).fast_renderer()(ROW["prompt"][0], int(ROW["seed"][0]))
    assert pair_id == "p0" and fast.dtype == np.uint8 and fast.shape == (32, 32, 3)
    assert np.array_equal(fast, schnell) and not np.array_equal(schnell, dev)
