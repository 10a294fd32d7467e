"""Pretrained metric weights: configured file -> the libraries' own caches (stand-ins placed there) -> a quick reason."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from facerealism.metrics import fd_dinov2_cmmd, pretrained

from .conftest import ROOT, cli_env


# --- the network probe ------------------------------------------------------------------------------------------


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server over tmp_path/www; yields its base URL."""
    import functools
    import http.server
    import threading

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "x.pth").write_bytes(b"weights")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_probe_answers_for_a_served_file_and_names_what_is_wrong_otherwise(http_server):
    assert pretrained.offline_reason(f"{http_server}/x.pth") is None
    assert pretrained.offline_reason(f"{http_server}/missing.pth") == f"HTTP 404 from {http_server}/missing.pth"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: refused at once
        port = closed.getsockname()[1]
        assert "refused" in pretrained.offline_reason(f"http://127.0.0.1:{port}/x.pth")


def test_probe_gives_up_on_a_host_that_never_answers_within_its_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nothing ever replies: a download would hang
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/weights.pth"
        start = time.monotonic()
        reason = pretrained.offline_reason(url)
        elapsed = time.monotonic() - start
    assert reason is not None and url in reason
    assert pretrained.PROBE_TIMEOUT_S - 0.5 < elapsed < pretrained.PROBE_TIMEOUT_S + 1.0


def test_offline_switch_and_bad_url(monkeypatch):
    monkeypatch.setenv("FACEREALISM_OFFLINE", "1")
    assert pretrained.offline_reason("https://github.com/") == "FACEREALISM_OFFLINE is set"
    with pytest.raises(ValueError, match="not a download URL"):
        pretrained.offline_reason("weights.pth")


# --- resolution order, in process (torch.hub reads TORCH_HOME on every call) ------------------------------------


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("FACEREALISM_OFFLINE", "1")  # nothing here can be downloaded; decide at once
    return tmp_path / "torch"


def test_lpips_backbone_order(torch_home, tmp_path):
    from tests.standins import place_alexnet

    from facerealism.metrics import lpips_pairs

    with pytest.raises(pretrained.WeightsUnavailable, match="alexnet-owt-7be5be79.pth") as e:
        pretrained.lpips_backbone("alex", None)
    assert str(torch_home / "hub" / "checkpoints") in str(e.value) and "FACEREALISM_OFFLINE" in str(e.value)
    cached = place_alexnet(torch_home, seed=0)
    assert pretrained.lpips_backbone("alex", None) == str(cached)
    configured = place_alexnet(tmp_path / "elsewhere", seed=1)
    assert pretrained.lpips_backbone("alex", str(configured)) == str(configured)
    with pytest.raises(pretrained.WeightsUnavailable, match="evaluate.lpips_weights='nope.pth' does not exist"):
        pretrained.lpips_backbone("alex", "nope.pth")
    # Both files really load, and they are different networks.
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (2, 3, 32, 32, 3), dtype=np.uint8)
    from_cache, from_config = lpips_pairs(a, b, None), lpips_pairs(a, b, str(configured))
    assert from_cache["available"] and from_config["available"]
    assert from_cache["mean"] != pytest.approx(from_config["mean"])


def test_lpips_backbone_is_downloaded_into_torchvisions_cache_when_the_host_answers(torch_home, tmp_path,
                                                                                    http_server, monkeypatch):
    import hashlib

    from tests.standins import place_alexnet

    # torch.hub checks the file's SHA-256 prefix in its name, as for torchvision's real file.
    served = place_alexnet(tmp_path / "made", seed=2)
    name = f"alexnet-owt-{hashlib.sha256(served.read_bytes()).hexdigest()[:8]}.pth"
    (tmp_path / "www" / name).write_bytes(served.read_bytes())
    monkeypatch.setitem(pretrained.LPIPS_BACKBONE_URLS, "alex", f"{http_server}/{name}")
    monkeypatch.delenv("FACEREALISM_OFFLINE")
    path = pretrained.lpips_backbone("alex", None)
    assert path == str(torch_home / "hub" / "checkpoints" / name)
    assert Path(path).read_bytes() == served.read_bytes()


def test_inception_weights_order(torch_home, tmp_path):
    from tests.standins import place_inception

    from facerealism.metrics import inception_weights_problem

    reason = inception_weights_problem(None)
    assert "evaluate.inception_weights is not set" in reason and "weights-inception-2015-12-05-6726825d.pth" in reason
    cached = place_inception(torch_home)
    assert pretrained.inception_weights(None) == str(cached) and inception_weights_problem(None) is None


def test_dinov2_loads_torch_hubs_cached_repo_and_checkpoint(torch_home):
    from tests.standins import place_dinov2

    with pytest.raises(pretrained.WeightsUnavailable, match="the hub repo at .*facebookresearch_dinov2_main"):
        pretrained.dinov2()
    checkpoint = place_dinov2(torch_home, seed=3)
    model = pretrained.dinov2()
    saved = torch.load(checkpoint, weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())  # the cached file, not random init
    f = fd_dinov2_cmmd.dinov2_features(np.zeros((3, 20, 20, 3), np.uint8), model)
    assert f.shape == (3, 32)
    checkpoint.unlink()  # the repo alone is not enough: the reason names the missing checkpoint
    with pytest.raises(pretrained.WeightsUnavailable, match="dinov2_vitl14_pretrain.pth"):
        pretrained.dinov2()


# --- CMMD -------------------------------------------------------------------------------------------------------


def test_cmmd_closed_form_and_properties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 4))
    assert fd_dinov2_cmmd.cmmd(x, x) == 0.0
    # Two point masses a distance r apart: k_xx = k_yy = 1, k_xy = exp(-r^2 / (2 sigma^2)).
    r = 5.0
    expected = 1000.0 * (2.0 - 2.0 * np.exp(-(r**2) / (2 * 10.0**2)))
    assert fd_dinov2_cmmd.cmmd(np.zeros((3, 2)), np.full((4, 2), r / np.sqrt(2))) == pytest.approx(expected)
    assert fd_dinov2_cmmd.cmmd(x, x + 1.0) < fd_dinov2_cmmd.cmmd(x, x + 3.0)
    with pytest.raises(ValueError, match="one d"):
        fd_dinov2_cmmd.cmmd(x, x[:, :3])


# --- the whole evaluate table with the libraries' caches as a fresh process sees them ---------------------------

TABLE = """
import json, time
import numpy as np
from facerealism.config import load_config
from facerealism.scoring.rows import table4
from facerealism.scoring.table4 import DEV, SCHNELL, flat_metrics
rng = np.random.default_rng(0)
s, d, dc, h = (rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8) for _ in range(4))
cfg = load_config("params.yaml", ["evaluate.bootstrap=5", "evaluate.c2st_folds=2", "evaluate.c2st_max_images=8"])
start = time.monotonic()
t = table4(cfg, s, d, dc, {"head": h})  # dc: the independent dev-check sample
print("RESULT", json.dumps({"seconds": time.monotonic() - start, "head": t["rows"]["head"],
                            "flat": flat_metrics(t, "head")}, default=str))
"""


def _table_in_fresh_process(tmp_path: Path, place: bool) -> dict:
    torch_home, hf_home = tmp_path / "torch", tmp_path / "hf"
    env = {**cli_env(), "TORCH_HOME": str(torch_home), "HF_HOME": str(hf_home), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("FACEREALISM_OFFLINE", None)
    if place:
        from tests.standins import place_all

        place_all(torch_home, hf_home)
    done = subprocess.run([sys.executable, "-c", TABLE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT ", 1)[1])


@pytest.mark.slow  # a Prefect flow, subprocesses or full-size FLOPs: the full layer
def test_standins_in_the_standard_caches_make_every_weighted_column_available(tmp_path):
    r = _table_in_fresh_process(tmp_path, place=True)
    head, flat = r["head"], r["flat"]
    for col in ("fid", "lpips", "fd_dinov2", "cmmd"):
        assert head[col]["available"] is True, (col, head[col])
    assert head["fid"]["kid_subset_size"] == 6  # KID subsets fit the 6 images
    assert np.isfinite([head["fid"]["fid_diff"], head["lpips"]["mean"]]).all()
    dino, cm = head["fd_dinov2"], head["cmmd"]
    assert dino["fd_diff"] == pytest.approx(dino["fd_schnell"] - dino["fd_dev"]) and len(dino["fd_diff_ci"]) == 2
    assert cm["cmmd_diff"] == pytest.approx(cm["cmmd_schnell"] - cm["cmmd_dev"]) and cm["cmmd_dev"] > 0
    assert flat["fd_dinov2.available"] and flat["fd_dinov2.fd_diff"] == dino["fd_diff"]
    assert flat["cmmd.available"] and flat["cmmd.cmmd_diff"] == cm["cmmd_diff"]


def test_nothing_placed_every_weighted_column_gives_its_reason_quickly(tmp_path):
    r = _table_in_fresh_process(tmp_path, place=False)
    head = r["head"]
    expect = {"fid": "weights-inception-2015-12-05", "lpips": "alexnet-owt-7be5be79.pth",
              "fd_dinov2": "facebookresearch_dinov2_main", "cmmd": "openai/clip-vit-large-patch14-336"}
    for col, name in expect.items():
        assert head[col]["available"] is False and name in head[col]["reason"], (col, head[col])
        assert "download is impossible" in head[col]["reason"]
    assert r["flat"]["cmmd.reason"] == head["cmmd"]["reason"]
    # All four decisions (probes included) plus the offline columns on 6 images: seconds, not a download's hang.
    assert r["seconds"] < 4 * pretrained.PROBE_TIMEOUT_S + 20
