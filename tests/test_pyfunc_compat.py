"""Models registered before the package was regrouped keep loading: their logged code imports what still exists.

The head is logged as an MLflow "model from code": the registry copies the pyfunc module's file into the model, and
loading it imports facerealism.errors, facerealism.files and facerealism.head by those paths. The fixture is that
file exactly as it was logged before the move (src/facerealism/pyfunc_model.py at commit 6414935).
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facerealism.head import enhance_array, load_head, save_head
from facerealism.models import build_generator

PRE_MOVE_PYFUNC = Path(__file__).parent / "fixtures" / "pyfunc_model_pre_layout.py"


@pytest.mark.slow  # a fresh Python process importing MLflow and torch: the full layer
def test_a_pyfunc_logged_by_the_pre_move_code_loads_and_predicts_in_a_fresh_process(tmp_path):
    import mlflow

    torch.manual_seed(0)
    kwargs = {"ngf": 8, "n_blocks": 1, "residual_output": True}
    G = build_generator("esa_resnet", **kwargs)
    with torch.no_grad():  # perturbed, so the output proves which weights ran
        for p in G.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_head(G, tmp_path / "head", "esa_resnet", kwargs, {})
    mlflow.pyfunc.save_model(tmp_path / "model", python_model=str(PRE_MOVE_PYFUNC),
                             artifacts={"head": str(tmp_path / "head")}, pip_requirements=["facerealism"])
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")

    code = ("import mlflow, pandas as pd, sys; m = mlflow.pyfunc.load_model(sys.argv[1]); "
            "print(m.predict(pd.DataFrame({'image': [sys.argv[2]]}))['image'][0])")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model"), str(tmp_path / "x.png")],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=180,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(res.stdout.strip().splitlines()[-1]))).convert("RGB"))
    head, _ = load_head(tmp_path / "head")
    assert np.array_equal(got, enhance_array(head, image[None])[0]) and not np.array_equal(got, image)


def test_the_pre_move_pyfunc_imports_only_modules_the_package_root_still_holds():
    import ast

    imported = {n.module for n in ast.walk(ast.parse(PRE_MOVE_PYFUNC.read_text()))
                if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("facerealism")}
    assert imported == {"facerealism.errors", "facerealism.files", "facerealism.head"}
    for module in imported:
        __import__(module)
