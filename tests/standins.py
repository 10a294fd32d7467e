"""Tiny random stand-ins for the metrics' pretrained networks, placed exactly where each library looks for them.

Values are meaningless (random weights): they prove that each library's cache path is found and loads, never
quality. `python -m tests.standins TORCH_HOME HF_HOME` places them all, e.g. before `make run`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import torch

from facerealism.metrics import pretrained

# A hubconf.py for torch.hub's cached facebookresearch/dinov2 repo: the real entry point's name and signature, a
# tiny ViT (patch 14, CLS output like DINOv2's forward), weights from torch.hub's checkpoint cache like the real one.
DINOV2_HUBCONF = f'''
"""Stand-in for facebookresearch/dinov2's hubconf: a tiny random ViT behind the real entry point."""
import torch
import torch.nn as nn

dependencies = ["torch"]


class TinyViT(nn.Module):
    def __init__(self, dim=32, patch=14):
        super().__init__()
        self.patch_size = patch
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.block = nn.TransformerEncoderLayer(dim, 2, dim * 2, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):  # (b, 3, h, w) -> (b, dim) normalised CLS token
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (b, n, dim)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        return self.norm(self.block(tokens))[:, 0]


def {pretrained.DINOV2_MODEL}(*, pretrained=True, **kwargs):
    model = TinyViT()
    if pretrained:
        model.load_state_dict(torch.hub.load_state_dict_from_url("{pretrained.DINOV2_URL}", map_location="cpu"))
    return model
'''


def _checkpoints(torch_home: Path) -> Path:
    folder = Path(torch_home) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def place_inception(torch_home: Path, seed: int = 0) -> Path:
    """torch-fidelity's Inception state dict (random values) under the name its downloader caches."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    cls = fe.FeatureExtractorInceptionV3
    # The extractor loads weights in __init__; skip that once to get a random module with exactly its keys.
    saved = fe.load_state_dict_from_url, cls.load_state_dict
    fe.load_state_dict_from_url, cls.load_state_dict = (lambda *a, **k: {}), (lambda self, *a, **k: None)
    try:
        torch.manual_seed(seed)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        fe.load_state_dict_from_url, cls.load_state_dict = saved
    path = _checkpoints(torch_home) / os.path.basename(pretrained.INCEPTION_URL)
    torch.save(net.state_dict(), path)
    return path


def place_alexnet(torch_home: Path, seed: int = 0) -> Path:
    """torchvision's AlexNet state dict (random values) under torchvision's download name, as lpips loads it."""
    import torchvision

    torch.manual_seed(seed)
    path = _checkpoints(torch_home) / os.path.basename(pretrained.LPIPS_BACKBONE_URLS["alex"])
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def place_dinov2(torch_home: Path, seed: int = 0) -> Path:
    """torch.hub's cached dinov2 repo (a stand-in hubconf) and the checkpoint its entry point downloads."""
    owner_name, ref = pretrained.DINOV2_REPO.split(":")
    repo = Path(torch_home) / "hub" / f"{owner_name.replace('/', '_')}_{ref}"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "hubconf.py").write_text(DINOV2_HUBCONF)
    torch.manual_seed(seed)
    model = torch.hub.load(str(repo), pretrained.DINOV2_MODEL, source="local", pretrained=False)
    path = _checkpoints(torch_home) / os.path.basename(pretrained.DINOV2_URL)
    torch.save(model.state_dict(), path)
    return path


def hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Lay `folder` out as huggingface_hub caches a download: blobs named by content hash, a snapshot of symlinks."""
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / revision / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return repo


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A tiny random CLIPModel (both towers, like the real repo) and its image processor, via save_pretrained."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 64, "max_position_embeddings": 16, "projection_dim": 8, "bos_token_id": 0,
                     "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8, "projection_dim": 8},
        projection_dim=8,
    )
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return Path(folder)


def place_clip(hf_home: Path, seed: int = 0) -> Path:
    """The tiny CLIP under CMMD's model id in the Hugging Face cache ($HF_HOME/hub)."""
    with tempfile.TemporaryDirectory() as tmp:
        return hub_cache(Path(hf_home) / "hub", pretrained.CLIP_MODEL_ID, save_tiny_clip(Path(tmp) / "clip", seed))


def place_all(torch_home: Path, hf_home: Path) -> list[Path]:
    """Every stand-in, in the caches that TORCH_HOME=torch_home and HF_HOME=hf_home point the libraries at."""
    return [place_inception(torch_home), place_alexnet(torch_home), place_dinov2(torch_home), place_clip(hf_home)]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tests.standins TORCH_HOME HF_HOME")
    for p in place_all(Path(sys.argv[1]), Path(sys.argv[2])):
        print(p)
