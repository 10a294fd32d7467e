"""Real FLUX.1 weights on a CUDA GPU: the paper's data engine at full size. Skipped without a GPU or the weights.

Run on a GPU box: `pytest -m gpu tests/test_real_flux.py` with both models in the Hugging Face cache
(`hf download black-forest-labs/FLUX.1-schnell` and `...FLUX.1-dev`, HF_TOKEN for the gated dev model) or with
FACEREALISM_FLUX_SCHNELL / FACEREALISM_FLUX_DEV pointing at local diffusers directories.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from facerealism.config import load_config

from .conftest import ROOT

FAST = os.environ.get("FACEREALISM_FLUX_SCHNELL", "black-forest-labs/FLUX.1-schnell")
SLOW = os.environ.get("FACEREALISM_FLUX_DEV", "black-forest-labs/FLUX.1-dev")


def why_skip() -> str | None:
    import torch

    from facerealism.backends.flux import model_dir

    if not torch.cuda.is_available():
        return "needs a CUDA GPU (none here)"
    missing = [m for m in (FAST, SLOW) if model_dir(m) is None]
    if missing:
        return f"needs FLUX weights on disk: {missing} are neither local directories nor in the Hugging Face cache"
    return None


REASON = why_skip()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def paper_cfg(tmp_path, *extra: str):
    return load_config(ROOT / "params.paper.yaml", [
        f"generate.flux.fast_model={FAST}", f"generate.flux.slow_model={SLOW}",
        f"paths.data={tmp_path}/data", f"paths.reports={tmp_path}/reports", *extra])


def test_paper_pairs_at_512_hold_one_copy_of_the_shared_encoders_and_keep_the_layout(tmp_path):
    import torch
    from PIL import Image

    from facerealism.backends.flux import FluxBackend

    backend = FluxBackend(paper_cfg(tmp_path, "generate.flux.batch_size=2"))
    rows = pd.DataFrame({"id": ["a", "b"], "seed": [1, 2],
                         "prompt": ["A professional portrait of Ada Lovelace", "A professional portrait of Kwame Mensah"]})
    backend.load()
    fast, slow = backend.fast_pipe, backend.slow_pipe
    assert slow.text_encoder_2 is fast.text_encoder_2 and slow.vae is fast.vae  # schnell and dev ship the same files
    assert fast.transformer.dtype == torch.bfloat16
    modules = {id(m): m for pipe in (fast, slow) for m in pipe.components.values() if isinstance(m, torch.nn.Module)}
    weights = sum(p.numel() * p.element_size() for m in modules.values() for p in m.parameters())
    assert torch.cuda.memory_allocated() < weights + 2**30  # the GPU holds each shared module once

    def thumb(im):  # composition only: strength 0.7 redraws the detail, not the layout
        return np.asarray(Image.fromarray(im).resize((32, 32))).astype(float).ravel()

    for _, schnell, dev in backend.generate(rows):
        assert schnell.shape == dev.shape == (512, 512, 3)
        assert np.abs(schnell.astype(int) - dev).mean() > 2
        assert np.corrcoef(thumb(schnell), thumb(dev))[0, 1] > 0.5


def test_generate_stage_with_the_paper_params_writes_a_manifest_validate_accepts(tmp_path):
    from facerealism.stages import run_stage

    cfg = paper_cfg(tmp_path, "prompts.n_enriched=4", "prompts.n_baseline=0")
    run_stage("prompts", cfg)
    result = run_stage("generate", cfg)
    assert result["pairs"] == 4
    assert run_stage("validate", cfg)["passed"]
