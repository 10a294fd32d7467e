"""Identity preservation: cosine of dlib face descriptors between each input and its output."""

from __future__ import annotations

import numpy as np

from facerealism.metrics.checks import check_images, check_pairs
from facerealism.metrics.dlib_faces import face_encoder, hog_detector, landmark_predictor


def face_descriptors(images: np.ndarray, upsample: int = 1) -> list[np.ndarray | None]:
    """dlib 128-D face descriptor of the largest detected face per image, None where no face is found.

    Args:
        images: (n, h, w, 3) uint8 RGB.
        upsample: HOG detector upsampling; each doubles the image (dlib's smallest face is ~80 px, ~40 at 1).
    """
    check_images(images)
    detector, landmarks, encoder = hog_detector(), landmark_predictor(), face_encoder()
    out: list[np.ndarray | None] = []
    for img in images:
        img = np.ascontiguousarray(img)
        faces = detector(img, upsample)
        if not faces:
            out.append(None)
            continue
        face = max(faces, key=lambda r: r.width() * r.height())
        out.append(np.array(encoder.compute_face_descriptor(img, landmarks(img, face))))
    return out


def identity_similarity(inputs: np.ndarray, outputs: np.ndarray, upsample: int = 1) -> dict:
    """Identity preservation: cosine of dlib face descriptors between each input and its output.

    Args:
        inputs: (n, h, w, 3) uint8.
        outputs: same shape; outputs[i] is the head's (or dev's) rendering of inputs[i].
        upsample: see face_descriptors.

    Returns:
        {"available": True, "mean_cosine", "pairs_scored", "pairs"} over pairs where both images hold a
        detected face, or {"available": False, "reason"} when no pair does.
    """
    return identity_summary(identity_pairs(inputs, outputs, upsample), inputs.shape[1:3])


def identity_pairs(inputs: np.ndarray, outputs: np.ndarray, upsample: int = 1) -> np.ndarray:
    """(n, 3) per pair: the descriptors' cosine (NaN unless both images hold a face), face found in the input (0/1),
    in the output (0/1); identity_summary of batches' rows stacked is the whole set's identity_similarity."""
    check_pairs(inputs, outputs)
    a, b = face_descriptors(inputs, upsample), face_descriptors(outputs, upsample)
    cos = [float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) if x is not None and y is not None else np.nan
           for x, y in zip(a, b)]
    return np.column_stack([cos, [x is not None for x in a], [y is not None for y in b]]).astype(np.float64)


def identity_summary(pairs: np.ndarray, size: tuple[int, int]) -> dict:
    """identity_similarity's result from identity_pairs' rows; `size`: the images' (h, w), for the reason."""
    cos = pairs[:, 0][np.isfinite(pairs[:, 0])]
    if not len(cos):
        found_in, found_out = int(pairs[:, 1].sum()), int(pairs[:, 2].sum())
        return {"available": False,
                "reason": f"dlib detected a face in {found_in}/{len(pairs)} inputs and {found_out}/{len(pairs)} "
                          f"outputs ({size[1]}x{size[0]} px; its HOG detector needs faces of ~40+ px "
                          f"that look like photographs), so no pair can be compared"}
    return {"available": True, "mean_cosine": float(np.mean(cos)), "pairs_scored": len(cos), "pairs": len(pairs)}
