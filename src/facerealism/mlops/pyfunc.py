"""The MLflow pyfunc wrapper of the head, logged as "model from code" so no Python object is pickled."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd

from facerealism.errors import UserError
from facerealism.mlops.codec import decode_image, encode_image


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
