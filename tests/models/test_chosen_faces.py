"""Group photos: the photo check lists every face with its box and whether it can move, and a face the
visitor leaves out keeps still in the portrait animator's clip while the chosen one moves."""

from __future__ import annotations

import numpy as np
from PIL import Image

from models.base import AnimationRequest
from models.face import chosen_faces
from models.portrait import PortraitAnimator
from models.quality import check_photo_faces


def quiet(*_args: object) -> None:
    pass


def test_the_check_lists_each_face_largest_first_with_a_fractional_box(pair_photo: Image.Image) -> None:
    report, faces = check_photo_faces(pair_photo)
    assert report["faces"] == len(faces) == 2
    assert [f["index"] for f in faces] == [0, 1]
    assert all(f["movable"] for f in faces)
    (x0, y0, w0, h0), (x1, y1, w1, h1) = (f["box"] for f in faces)
    assert all(0 <= v <= 1 for v in (x0, y0, w0, h0, x1, y1, w1, h1))
    assert w0 * h0 > w1 * h1  # largest first
    assert x0 + w0 <= 0.5 < x1  # Grace Hopper on the left, the astronaut on the right


def test_only_the_largest_faces_up_to_the_animators_count_are_movable(group_photo: Image.Image) -> None:
    _, faces = check_photo_faces(group_photo, movable_max=2)
    assert len(faces) == 3
    assert [f["movable"] for f in faces] == [True, True, False]


def test_tips_speak_of_faces_in_the_plural_where_there_are_several(
    pair_photo: Image.Image, grace_hopper: Image.Image
) -> None:
    pair_tips = " ".join(check_photo_faces(pair_photo)[0]["tips"])
    assert "a clear, well-lit face" not in pair_tips
    assert "The face is" not in pair_tips and "the face fills" not in pair_tips
    single = check_photo_faces(grace_hopper)[0]["tips"]
    assert not any("faces" in tip for tip in single if not tip.startswith("No face"))


def test_faces_are_matched_by_box_whatever_order_a_detector_finds_them_in() -> None:
    found = [(10.0, 10.0, 60.0, 70.0), (100.0, 20.0, 140.0, 70.0)]  # corners, in pixels
    right = [(0.5, 0.1, 0.2, 0.25)]  # x, y, w, h fractions of a 200 × 200 picture
    assert chosen_faces(found, 200, 200, right) == [False, True]
    assert chosen_faces(found[::-1], 200, 200, right) == [True, False]
    assert chosen_faces(found, 200, 200, None) == [True, True]
    assert chosen_faces(found, 200, 200, [(0.9, 0.9, 0.05, 0.05)]) == [False, False]  # nowhere near


def _face_change(frames: np.ndarray, box: list[float]) -> float:
    """The largest mean change of a face's box (x, y, w, h fractions) from the first frame."""
    h, w = frames.shape[1:3]
    x, y, bw, bh = box
    region = frames[:, int(y * h) : int((y + bh) * h), int(x * w) : int((x + bw) * w)].astype(np.float32)
    return float(max(np.abs(region[i] - region[0]).mean() for i in range(1, len(region))))


def test_a_face_left_out_keeps_still_while_the_chosen_one_moves(pair_photo: Image.Image) -> None:
    _, faces = check_photo_faces(pair_photo)
    left, right = (f["box"] for f in faces)
    animator = PortraitAnimator(max_side=512)
    both = animator.animate(pair_photo, AnimationRequest(motion="look-around", frames=24, seed=3), quiet)
    only_right = animator.animate(
        pair_photo,
        AnimationRequest(motion="look-around", frames=24, seed=3, faces=(tuple(right),)),  # type: ignore[arg-type]
        quiet,
    )
    moving = np.asarray(both.frames)
    chosen = np.asarray(only_right.frames)
    assert _face_change(moving, left) > 1.0  # the face moves when chosen...
    assert _face_change(chosen, left) < 0.05  # ...and keeps still when left out
    assert _face_change(chosen, right) > 1.0
    assert only_right.moves
