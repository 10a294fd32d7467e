"""Images in and out of a registered model: a path, PNG/JPEG bytes or base64 in; base64 PNG out."""

from __future__ import annotations

import base64
import binascii
import io
import os

import numpy as np
from PIL import Image

from facerealism.errors import UserError


def decode_image(value) -> np.ndarray:
    """A file path, raw PNG/JPEG bytes or a base64 string of them -> uint8 (h, w, 3)."""
    from facerealism.files import load_rgb

    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str) and os.path.exists(value):
        return load_rgb(value)
    elif isinstance(value, str):
        try:
            data = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise UserError(f"input {value[:60]!r} is neither an existing file nor base64 image data") from None
    else:
        raise UserError(f"input of type {type(value).__name__} is not an image path, bytes or base64 string")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        raise UserError(f"input is not a decodable image ({type(e).__name__})") from None


def encode_image(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()
