"""The clip check on real portraits: clips of the portrait animator pass, and real failures fail on the
measure they break (a morph into another person on identity, a frozen clip on life, flicker and shaking
on steadiness), each with its figures asserted, measured on the encoded MP4."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.color
import skimage.data
from matplotlib import cbook
from PIL import Image

from bench.clip_check import morph  # the bench's guard case, built the same way
from models.base import AnimationRequest
from models.clip_check import (
    FLICKER_MAX,
    JITTER_MAX,
    LIFE_MIN,
    CheckLimits,
    ClipChecker,
    Promise,
    delta_e_2000,
    sample_frames,
)
from models.portrait import PortraitAnimator
from models.push_in import PushInAnimator
from models.render import render_clip
from models.video import encode_mp4, read_frames

PORTRAITS = ("grace_hopper", "astronaut")


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    """The packaged portraits at the size they ship (512×600 and 512×512), as a visitor would upload."""
    return {
        "grace_hopper": Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"),
        "astronaut": Image.fromarray(skimage.data.astronaut()),
    }


@pytest.fixture(scope="module")
def checker(clip_checker: ClipChecker) -> ClipChecker:
    return clip_checker


@pytest.fixture(scope="module")
def animator(full_size_animator: PortraitAnimator) -> PortraitAnimator:
    return full_size_animator


@pytest.fixture(scope="module")
def gentle_frames(photos, animator) -> np.ndarray:
    """Grace Hopper's gentle clip, decoded: the base that the failure cases spoil."""
    clip = render_clip(animator, photos["grace_hopper"], AnimationRequest(motion="gentle", seed=3))
    return read_frames(clip.mp4)


@pytest.mark.parametrize("name", PORTRAITS)
def test_the_portrait_animator_passes_on_every_packaged_portrait(name, photos, animator, checker) -> None:
    photo = photos[name]
    clip = render_clip(animator, photo, AnimationRequest(motion="auto", seed=5))
    # As the guard checks it: the animator's own reading of the photo reused.
    reference = checker.reference(photo, clip.photo_analysis)
    promise = Promise(clip.moves, clip.loops)
    check = checker.check(reference, clip.mp4, frames=clip.frame_count, promise=promise)
    assert check.passed, check.failures
    assert clip.loops and clip.moves
    (face,) = check.faces
    assert face.kept == 1.0
    assert face.identity_max is not None and face.identity_max < 0.45  # same person, with room
    assert check.identity_distance == face.identity_max
    assert check.jitter is not None and check.jitter < JITTER_MAX
    assert check.flicker is not None and check.flicker < 0.1  # the warp leaves the background alone
    assert check.color_delta_e is not None and check.color_delta_e < 1.5  # H.264's rounding, no cast
    assert check.life is not None and check.life > 3 * LIFE_MIN
    assert check.seam is not None and check.seam < 1.0  # it loops: the last frame is the first
    assert check.sampled_frames == 9 and 0 < check.seconds < 10
    # The reading reused is the photo's: the same figures as a check that reads the photo itself.
    fresh = checker.check(photo, clip.mp4, frames=clip.frame_count, promise=promise)
    assert fresh.identity_distance is not None and check.identity_distance is not None
    assert abs(fresh.identity_distance - check.identity_distance) < 0.03
    assert fresh.color_delta_e is not None and abs(fresh.color_delta_e - check.color_delta_e) < 0.3


def test_a_frozen_clip_fails_on_life(photos, checker) -> None:
    photo = photos["grace_hopper"]
    frozen = np.repeat(np.asarray(photo)[None], 96, axis=0)
    check = checker.check(photo, encode_mp4(frozen, 24))
    assert not check.passed
    assert [f.split(":")[0] for f in check.failures] == ["life"]
    assert check.life is not None and check.life < LIFE_MIN
    assert check.identity_distance is not None and check.identity_distance < 0.2  # still the person
    assert check.jitter is not None and check.jitter < 0.1 * JITTER_MAX  # the same landmarks each frame


def test_a_still_clip_passes_where_nothing_was_meant_to_move(photos, checker) -> None:
    """A push-in moves no face: it is exempt from life, and passes."""
    photo = photos["astronaut"]
    clip = render_clip(PushInAnimator(), photo, AnimationRequest(seed=1))
    assert not clip.moves
    check = checker.check(photo, clip.mp4, promise=Promise(moves=clip.moves))
    assert check.passed, check.failures
    assert check.identity_distance is not None and check.identity_distance < 0.3


def test_injected_flicker_fails_on_steadiness(photos, gentle_frames, checker) -> None:
    frames = gentle_frames.astype(np.float32)
    frames[1::2] *= 1.08  # every other frame 8 % brighter: a strobing clip
    flickering = encode_mp4(np.clip(frames, 0, 255).astype(np.uint8), 24)
    check = checker.check(photos["grace_hopper"], flickering, promise=Promise(loops=True))
    assert not check.passed
    assert any(f.startswith("steadiness: background flicker") for f in check.failures)
    assert check.flicker is not None and check.flicker > 2 * FLICKER_MAX
    assert check.identity_distance is not None and check.identity_distance < 0.4  # the person is kept


def test_a_shaking_face_fails_on_steadiness(photos, gentle_frames, checker) -> None:
    rng = np.random.default_rng(0)
    shaken = np.stack(
        [np.roll(f, tuple(rng.integers(-6, 7, size=2)), axis=(0, 1)) for f in gentle_frames]
    )  # the whole picture jumps by up to 6 px, frame by frame
    check = checker.check(photos["grace_hopper"], encode_mp4(shaken, 24))
    assert not check.passed
    assert any(f.startswith("steadiness: landmark jitter") for f in check.failures)
    assert check.jitter is not None and check.jitter > 2 * JITTER_MAX


def test_a_clip_that_morphs_into_another_person_fails_on_identity(photos, checker) -> None:
    photo = photos["grace_hopper"]
    check = checker.check(photo, encode_mp4(morph(photo, photos["astronaut"]), 24))
    assert not check.passed
    assert any(f.startswith("identity: face 1") for f in check.failures)
    (face,) = check.faces
    assert face.identity_max is not None and face.identity_max >= 0.6  # someone else by the end
    assert face.identity_mean is not None and face.identity_mean < face.identity_max  # drifting
    assert face.kept >= 0.9  # a face all along: it is the likeness that went


def test_a_photo_without_a_face_is_measured_on_the_rest() -> None:
    """The diffusion animator accepts a photo without a face: no likeness to check, the rest applies."""
    checker = ClipChecker()
    photo = Image.fromarray(skimage.data.coffee())
    frames = np.stack([np.roll(np.asarray(photo), i // 2, axis=1) for i in range(72)])  # a slow pan
    check = checker.check(photo, encode_mp4(frames, 24))
    assert check.faces == [] and check.identity_distance is None and check.jitter is None
    assert check.life is not None and check.life > LIFE_MIN  # motion seen in the whole picture
    assert check.passed, check.failures
    frozen = checker.check(photo, encode_mp4(np.repeat(np.asarray(photo)[None], 72, axis=0), 24))
    assert not frozen.passed and frozen.failures[0].startswith("life")


def test_limits_are_the_settings_not_constants(photos, gentle_frames, checker) -> None:
    strict = CheckLimits(identity=0.01)
    check = checker.check(photos["grace_hopper"], encode_mp4(gentle_frames, 24), limits=strict)
    assert [f.split(":")[0] for f in check.failures] == ["identity"]


def test_runs_of_three_consecutive_frames_cover_the_clip_first_to_last() -> None:
    assert sample_frames(96, 4) == [0, 1, 2, 31, 32, 33, 62, 63, 64, 93, 94, 95]
    assert sample_frames(3, 4) == [0, 1, 2]
    assert sample_frames(7, 4) == [0, 1, 2, 4, 5, 6]


@pytest.mark.parametrize(
    ("lab1", "lab2"),
    [((50, 2.6772, -79.7751), (50, 0, -82.7485)), ((60, 20, 10), (61, 18, 15)), ((30, 0, 0), (30, 0, 0))],
)
def test_colour_difference_is_ciede2000(lab1, lab2) -> None:
    expected = skimage.color.deltaE_ciede2000(np.array(lab1, float), np.array(lab2, float))
    assert delta_e_2000(np.array(lab1), np.array(lab2)) == pytest.approx(float(expected), abs=1e-4)


def test_a_recording_that_keeps_the_face_still_is_exempt_from_life(photos, animator, checker) -> None:
    """The live view lets a visitor record a still face (breathing only): that clip is not asked to move."""
    from models.motion_curves import RecordedMotion

    still = RecordedMotion.from_json({"fps": 24, "channels": {"breath": [0.0] * 36 + [0.5] * 36}})
    assert still.face_still
    photo = photos["astronaut"]
    clip = render_clip(animator, photo, AnimationRequest(curves=still))
    assert not clip.moves and clip.loops
    check = checker.check(photo, clip.mp4, frames=clip.frame_count, promise=Promise(clip.moves, clip.loops))
    assert check.passed, check.failures
    moving = RecordedMotion.from_json({"fps": 24, "channels": {"yaw": [0.0] * 36 + [8.0] * 36}})
    assert not moving.face_still


def test_a_jerky_recording_is_the_visitors_own_and_not_judged_as_jitter(photos, animator, checker) -> None:
    """A pointer that jumps makes a recording in steps: the clip follows them sample by sample. Jitter is
    still measured and reported, but a visitor's own steps do not fail the clip."""
    from models.motion_curves import RecordedMotion

    # A pointer shaken left and right: a 6° jump every second sample, so every sampled run holds one.
    steps = 6.0 * ((np.arange(120) // 2) % 2) - 3.0
    recorded = RecordedMotion.from_json({"fps": 24, "channels": {"yaw": [float(v) for v in steps]}})
    photo = photos["grace_hopper"]
    clip = render_clip(animator, photo, AnimationRequest(curves=recorded))
    assert not clip.steady and clip.moves
    promise = Promise(clip.moves, clip.loops, clip.steady)
    check = checker.check(photo, clip.mp4, frames=clip.frame_count, promise=promise)
    assert check.passed, check.failures
    assert check.jitter is not None and check.jitter > JITTER_MAX  # measured: it does jump
    judged = checker.check(photo, clip.mp4, frames=clip.frame_count, promise=Promise(clip.moves, clip.loops))
    assert [f.split(":")[0] for f in judged.failures] == ["steadiness"]  # the same clip, promised steady


def test_the_photos_background_is_carried_to_the_clip() -> None:
    """The background the check measures is the photo's, moved as the clip moved the photo: resized for a
    clip of the photo's shape, shifted for a model's crop or pad, and a padded border never counts."""
    from models.clip_check import _background_in_clip, _small_size

    person = np.zeros((160, 120), np.float32)  # the photo's small mask: a person in the middle third
    person[40:160, 40:80] = 1.0
    same = _background_in_clip(person, (600, 800), 0.5, np.zeros(2), (400, 300, 3))  # the photo at half size
    assert same.shape == _small_size((400, 300, 3))[::-1] and np.array_equal(same, person < 0.1)
    padded = _background_in_clip(
        person, (600, 800), 0.5, np.array([100.0, 0.0]), (400, 500, 3)
    )  # 100 px each side
    w = padded.shape[1]
    assert (
        not padded[:, : w // 5 - 1].any() and not padded[:, -(w // 5 - 1) :].any()
    )  # the pad is no background
    assert padded[:, w // 5 + 2 : w // 5 + 10].all()  # the photo's own background, left of the person
