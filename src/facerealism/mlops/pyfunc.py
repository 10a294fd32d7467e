"""The MLflow pyfunc wrapper of the head, logged as "model from code" so no Python object is pickled."""

from __future__ import annotations

import base64
import binascii
import io
import os

import mlflow
import numpy as np
import pandas as pd
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


class HeadModel(mlflow.pyfunc.PythonModel):
    """Input: DataFrame with column `image` (path, bytes or base64 PNG). Output: column `image`, base64 PNG."""

    def load_context(self, context):
        from facerealism.head import load_head

        self.G, self.meta = load_head(context.artifacts["head"])

    def enhance(self, image: np.ndarray) -> np.ndarray:
        """uint8 (h, w, 3) -> enhanced uint8 image of the same size."""
        return self.enhance_batch(image[None])[0]

    def enhance_batch(self, images: np.ndarray) -> np.ndarray:
        """uint8 (n, h, w, 3), one size -> enhanced uint8 images of the same shape."""
        from facerealism.head import enhance_array

        return enhance_array(self.G, images)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if "image" not in model_input.columns:
            raise UserError("input needs a column named 'image' (file path, bytes or base64 PNG)")
        return pd.DataFrame({"image": [encode_image(self.enhance(decode_image(v))) for v in model_input["image"]]})


mlflow.models.set_model(HeadModel())
