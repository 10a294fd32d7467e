"""PNG grids for people: rows of image sets side by side, upscaled with nearest neighbour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facerealism.files import atomic_write_bytes, encode_png


def image_grid(rows: list[np.ndarray], labels: list[str] | None = None, scale: int = 3, pad: int = 2) -> np.ndarray:
    """Stack image sets as labelled rows.

    Args:
        rows: each (n, h, w, 3) uint8, the same n, h, w.
        labels: one caption per row, drawn in a left margin.
        scale: nearest-neighbour upscaling so 64 px textures stay visible.
    Returns:
        One uint8 image.
    """
    n, h, w, _ = rows[0].shape
    h, w = h * scale, w * scale
    font = ImageFont.load_default(size=max(12, min(18, h // 5)))  # legible beside 64-256 px rows
    margin = int(max(font.getlength(label) for label in labels)) + 10 if labels else 0
    canvas = np.full((len(rows) * (h + pad) + pad, margin + n * (w + pad) + pad, 3), 255, np.uint8)
    for r, imgs in enumerate(rows):
        for c, img in enumerate(imgs):
            y, x = pad + r * (h + pad), margin + pad + c * (w + pad)
            canvas[y : y + h, x : x + w] = img.repeat(scale, 0).repeat(scale, 1)
    pil = Image.fromarray(canvas)
    if labels:
        draw = ImageDraw.Draw(pil)
        for r, label in enumerate(labels):
            draw.text((4, pad + r * (h + pad) + h // 2), label, fill=(0, 0, 0), font=font, anchor="lm")
    return np.asarray(pil)


def save_grid(path: str | Path, rows: list[np.ndarray], labels: list[str] | None = None, scale: int = 3) -> Path:
    path = Path(path)
    atomic_write_bytes(path, encode_png(image_grid(rows, labels, scale)))
    return path
