"""The shippable head: save/load as safetensors + a self-describing JSON, and apply it to images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from facerealism.data.split import to_tensor, to_uint8
from facerealism.errors import UserError
from facerealism.files import read_json, write_json
from facerealism.models import build_generator

WEIGHTS, META = "head.safetensors", "head.json"


def save_head(G: torch.nn.Module, out_dir: str | Path, arch: str, kwargs: dict, extra: dict) -> None:
    """Weights next to the architecture and resolved config that describe them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    tmp = out_dir / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp), metadata={"arch": arch})
    tmp.replace(out_dir / WEIGHTS)
    write_json(out_dir / META, {"arch": arch, "kwargs": kwargs, **extra})


def load_head(head_dir: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the generator from its JSON and load its weights; returns (model in eval mode, metadata)."""
    head_dir = Path(head_dir)
    meta = read_json(head_dir / META)
    G = build_generator(meta["arch"], **meta["kwargs"])
    try:
        state = load_file(str(head_dir / WEIGHTS))
    except FileNotFoundError:
        raise FileNotFoundError(f"missing head weights {head_dir / WEIGHTS}: run the train stage first") from None
    except Exception as e:
        raise UserError(f"{head_dir / WEIGHTS}: corrupted weights file ({e})") from None
    missing, unexpected = G.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{head_dir / WEIGHTS} does not fit architecture {meta['arch']!r} "
                         f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)")
    return G.eval(), meta


@torch.inference_mode()
def enhance_array(G: torch.nn.Module, images: np.ndarray, batch_size: int = 16, device="cpu") -> np.ndarray:
    """Apply a generator (on `device`) to uint8 (n, h, w, 3) images whose sides are multiples of 4."""
    G.eval()
    n, h, w, _ = images.shape
    if h % 4 or w % 4:
        # The generator downsamples twice; reflect-pad to a multiple of 4 and crop back.
        ph, pw = -h % 4, -w % 4
        padded = np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")
        return enhance_array(G, padded, batch_size, device)[:, :h, :w]
    out = [to_uint8(G(to_tensor(images[i : i + batch_size]).to(device))) for i in range(0, n, batch_size)]
    return np.concatenate(out) if out else images.copy()
