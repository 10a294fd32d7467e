"""The MLflow pyfunc of a fitted filter: a closed-form baseline registered in place of a learned head, logged as
"model from code" with its fitted numbers as JSON, so no Python object is pickled."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd

from facerealism.errors import UserError
from facerealism.mlops.codec import decode_image, encode_image


class FittedFilterModel(mlflow.pyfunc.PythonModel):
    """Input: DataFrame with column `image` (path, bytes or base64 PNG). Output: column `image`, base64 PNG.

    Artifact `filter`: {"name", "params"} of `facerealism.scoring.fitted` (its Table 4 row's fitted numbers).
    """

    def load_context(self, context):
        from facerealism.files import read_json
        from facerealism.scoring import fitted

        spec = read_json(context.artifacts["filter"])
        self.name, self.params = spec["name"], spec["params"]
        self.filter = fitted.rebuild(self.name, self.params)

    def enhance(self, image: np.ndarray) -> np.ndarray:
        """uint8 (h, w, 3) -> filtered uint8 image of the same size."""
        return self.enhance_batch(image[None])[0]

    def enhance_batch(self, images: np.ndarray) -> np.ndarray:
        """uint8 (n, h, w, 3), one size -> filtered uint8 images of the same shape."""
        return self.filter(np.ascontiguousarray(images))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if "image" not in model_input.columns:
            raise UserError("input needs a column named 'image' (file path, bytes or base64 PNG)")
        return pd.DataFrame({"image": [encode_image(self.enhance(decode_image(v))) for v in model_input["image"]]})


mlflow.models.set_model(FittedFilterModel())
