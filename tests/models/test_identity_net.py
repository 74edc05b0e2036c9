"""The descriptor network run on numpy (models.identity_net) is dlib's network: on real aligned face chips
it gives dlib's own 128 numbers, and a file that is not that network is refused, not misread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from models.face import shared_analyzer
from models.identity import CHIP_PADDING, CHIP_SIZE, _model_folder, distance, dlib_box
from models.identity_net import DlibResNet

MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def chips_of(*photos: Image.Image) -> np.ndarray:
    """Each photo's largest face, aligned by dlib's 5-point model as IdentityModel aligns it."""
    import dlib

    aligner = dlib.shape_predictor(str(_model_folder() / "shape_predictor_5_face_landmarks.dat"))
    chips = []
    for photo in photos:
        rgb = np.asarray(photo.convert("RGB"))
        face = shared_analyzer().analyze(rgb).faces[0]
        shape = aligner(rgb, dlib.rectangle(*dlib_box(face)))
        chips.append(dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
    return np.stack(chips)


def test_the_numpy_network_gives_dlibs_own_descriptors(
    grace_hopper: Image.Image, astronaut: Image.Image
) -> None:
    import dlib

    chips = chips_of(grace_hopper, astronaut, ImageOps.mirror(grace_hopper))
    theirs = dlib.face_recognition_model_v1(str(_model_folder() / MODEL))
    expected = np.array([np.array(d) for d in theirs.compute_face_descriptor(list(chips))], np.float32)
    ours = DlibResNet.load(_model_folder() / MODEL)(chips)
    assert ours.shape == (3, 128) and ours.dtype == np.float32
    assert np.abs(ours - expected).max() < 1e-4
    # And so the same verdicts: the mirrored Grace Hopper is her, the astronaut is not.
    assert distance(ours[0], ours[2]) < 0.6 < distance(ours[0], ours[1])
    # One chip alone is the same as in a batch.
    assert np.abs(DlibResNet.load(_model_folder() / MODEL)(chips[1:2])[0] - expected[1]).max() < 1e-4


@pytest.mark.parametrize("model", ["shape_predictor_5_face_landmarks.dat", "mmod_human_face_detector.dat"])
def test_another_model_file_is_refused(model: str) -> None:
    with pytest.raises(ValueError):
        DlibResNet.load(_model_folder() / model)


def test_a_truncated_network_is_refused(tmp_path: Path) -> None:
    data = (_model_folder() / MODEL).read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        DlibResNet.load(cut)


def test_chips_of_another_shape_are_refused() -> None:
    with pytest.raises(ValueError):
        DlibResNet.load(_model_folder() / MODEL)(np.zeros((1, 128, 128, 3), np.uint8))
