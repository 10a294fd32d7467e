"""Input checks shared by the metrics: uint8 image batches, and pairs of them."""

from __future__ import annotations

import numpy as np

from facerealism.errors import UserError


def check_images(images: np.ndarray, name: str = "images") -> None:
    """Raise ValueError unless `images` is a non-empty uint8 array (n, h, w, 3)."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        got = f"{type(images).__name__} {getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}"
        raise UserError(f"{name} must be a uint8 numpy array of shape (n, h, w, 3), got {got}")
    if len(images) == 0:
        raise UserError(f"{name} is empty")


def check_pairs(inputs: np.ndarray, outputs: np.ndarray) -> None:
    """Raise ValueError unless inputs[i] and outputs[i] pair up: image batches of one shape."""
    check_images(inputs, "inputs")
    check_images(outputs, "outputs")
    if inputs.shape != outputs.shape:
        raise UserError(f"inputs and outputs must pair up one to one with equal sizes, got {inputs.shape} "
                         f"vs {outputs.shape}")
