"""Input -> output fidelity of a pair: SSIM, and LPIPS from a local torchvision backbone (one loader for all)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from facerealism.data.split import to_tensor
from facerealism.errors import UserError
import facerealism.metrics.pretrained as pretrained  # not `from facerealism.metrics import`: see stages/__init__.py
from facerealism.metrics.checks import check_pairs


def ssim_pairs(inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Per-pair SSIM (skimage, colour, 7x7 window; data range 255) between inputs and their outputs.

    Args:
        inputs: (n, h, w, 3) uint8, h and w >= 7.
        outputs: same shape as inputs.

    Returns:
        (n,) float64 SSIM in [-1, 1]; 1 = unchanged.
    """
    from skimage.metrics import structural_similarity

    check_pairs(inputs, outputs)
    if min(inputs.shape[1:3]) < 7:
        raise UserError(f"SSIM's 7x7 window needs images of at least 7x7 pixels, got {inputs.shape[1:3]}")
    return np.array([structural_similarity(a, b, channel_axis=-1, data_range=255) for a, b in zip(inputs, outputs)])


def lpips_pairs(inputs: np.ndarray, outputs: np.ndarray, weights_path: str | None, batch_size: int = 16) -> dict:
    """LPIPS (AlexNet, v0.1) between inputs and outputs; the backbone file comes from pretrained.lpips_backbone.

    The linear calibration layers ship inside the lpips package; only the AlexNet backbone needs a file.

    Args:
        inputs: (n, h, w, 3) uint8.
        outputs: same shape as inputs.
        weights_path: torchvision AlexNet state_dict (evaluate.lpips_weights), or None: torchvision's cache.
        batch_size: pairs per forward pass.

    Returns:
        {"available": True, "mean", "per_pair"} or {"available": False, "reason"}.
    """
    check_pairs(inputs, outputs)
    try:
        weights_path = pretrained.lpips_backbone("alex", weights_path)
    except pretrained.WeightsUnavailable as e:
        return {"available": False, "reason": str(e)}
    model = load_lpips("alex", weights_path, "evaluate.lpips_weights")
    per_pair = lpips_per_pair(model, inputs, outputs, batch_size)
    return {"available": True, "mean": float(per_pair.mean()), "per_pair": per_pair.tolist()}


def lpips_per_pair(model: torch.nn.Module, inputs: np.ndarray, outputs: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """(n,) float64 LPIPS of each pair under `model` (from load_lpips), `batch_size` pairs per forward pass."""
    check_pairs(inputs, outputs)
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            a = to_tensor(inputs[start : start + batch_size])
            b = to_tensor(outputs[start : start + batch_size])
            out.append(model(a, b).flatten())
    return torch.cat(out).double().numpy()


# torchvision's class of each lpips backbone, for messages.
TORCHVISION_NETS = {"alex": "AlexNet", "vgg": "VGG16"}


def load_lpips(net: str, path: str, setting: str) -> torch.nn.Module:
    """LPIPS (v0.1) in eval mode, its backbone copied from a torchvision state dict file (.pth or .safetensors).

    lpips' own linear layers ship in its wheel; the AlexNet/VGG backbone would be downloaded, which is
    impossible offline, and a random backbone would make LPIPS meaningless.

    Args:
        net: lpips backbone, "alex" or "vgg".
        path: the state dict file of torchvision's model (its `features.*` keys are read).
        setting: the setting that named the file, for messages.

    Raises:
        ValueError: the file is not a torchvision state dict of that backbone.
    """
    import lpips

    label = TORCHVISION_NETS.get(net, net)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch or safetensors file: "not the expected file"
        raise UserError(f"{setting}={path!r} is not a torchvision {label} state_dict "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    with warnings.catch_warnings():  # lpips asks torchvision with the deprecated `pretrained=` argument
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    # lpips splits torchvision's `features` into slices but keeps the layer indices: slice2.3.weight = features.3.weight.
    wanted = {k: "features." + k.split(".", 1)[1] for k in model.net.state_dict()}
    missing = [v for v in wanted.values() if v not in state]
    if missing:
        raise UserError(f"{setting}={path!r} is not a torchvision {net} state dict, i.e. not a torchvision {label} "
                         f"state_dict (no {missing[0]})")
    try:
        model.net.load_state_dict({k: state[v] for k, v in wanted.items()})
    except RuntimeError as e:
        raise UserError(f"{setting}={path!r} does not fit lpips net={net!r}: {str(e).splitlines()[-1].strip()}") from None
    return model.eval().requires_grad_(False)
