"""Motion "auto": planned from each real face (mirrored, tilted, cropped, turned); checked on its curves."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image, ImageOps

from models.auto_motion import AUTO, PlannedMotion, Unreadable, plan_motion, read_face
from models.face import Face, FaceAnalyzer
from models.motion import CHANNELS, HEAD_LIMITS, PRESETS, MotionError, parse_motion

N, FPS = 48, 12.0  # 4 s, few frames: the tests look at curves, not renders
GREY = (128, 128, 128)


def curves(planned: PlannedMotion, face: int = 0) -> dict[str, np.ndarray]:
    """The curves face `face` gets in the portrait animator (its plan, its own variant)."""
    return planned.plans[face].sample(N, FPS, variant=face)


def extreme(curve: np.ndarray) -> float:
    """The curve's value of largest magnitude, sign kept."""
    return float(curve[int(np.argmax(np.abs(curve)))])


def tilt(photo: Image.Image, degrees: float) -> Image.Image:
    """The photo rotated counter-clockwise (the head's eye line then falls toward the picture's left)."""
    return photo.rotate(degrees, Image.Resampling.BICUBIC, fillcolor=GREY)


def turned(face: Face, degrees: float) -> Face:
    """The real face's landmarks turned about the vertical axis through their centre: a head turned aside,
    as no sample photo shows one. Positive degrees turn it toward the picture's left."""
    p = face.points.astype(np.float64)
    centre = p.mean(axis=0)
    a = np.radians(degrees)
    r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return Face(points=((p - centre) @ r.T + centre).astype(np.float32), score=face.score)


@pytest.fixture(scope="module")
def face_of(face_analyzer: FaceAnalyzer):
    # Keyed by id, so the cache keeps each photo alive: a freed photo's id could be reused by the next
    # test's photo, which would then read the stale face.
    cache: dict[int, tuple[Image.Image, Face]] = {}

    def read(photo: Image.Image) -> Face:
        if id(photo) not in cache:
            faces = face_analyzer.analyze(photo, mask=False).faces
            assert len(faces) == 1
            cache[id(photo)] = (photo, faces[0])
        return cache[id(photo)][1]

    return read


@pytest.fixture(scope="module")
def variants(grace_hopper: Image.Image, astronaut: Image.Image) -> dict[str, Image.Image]:
    """Each real portrait as it is, mirrored, tilted both ways and cropped."""
    out: dict[str, Image.Image] = {}
    for name, photo in (("grace_hopper", grace_hopper), ("astronaut", astronaut)):
        out[name] = photo
        out[f"{name} mirrored"] = ImageOps.mirror(photo)
        out[f"{name} tilted +8"] = tilt(photo, 8)
        out[f"{name} tilted -8"] = tilt(photo, -8)
        w, h = photo.size
        out[f"{name} cropped"] = photo.crop((w // 8, 0, w - w // 8, h - h // 6))
    return out


# 1. Readings ------------------------------------------------------------------------------------------------


def test_readings_follow_the_photo(variants: dict[str, Image.Image], face_of) -> None:
    for name in ("grace_hopper", "astronaut"):
        base = read_face(face_of(variants[name]), 256)
        mirrored = read_face(face_of(variants[f"{name} mirrored"]), 256)
        cropped = read_face(face_of(variants[f"{name} cropped"]), variants[f"{name} cropped"].height)
        left = read_face(face_of(variants[f"{name} tilted +8"]), 256)
        right = read_face(face_of(variants[f"{name} tilted -8"]), 256)
        assert abs(base.yaw) < 4 and abs(base.pitch) < 4  # both look at the camera
        assert abs(base.gaze_x) < 0.15 and abs(base.gaze_y) < 0.15
        assert base.eyes_open > 0.15 and base.faces == 1
        assert mirrored.yaw == pytest.approx(-base.yaw, abs=3.5)
        assert mirrored.roll == pytest.approx(-base.roll, abs=2.5)
        # A counter-clockwise turn of the picture drops the eye line toward its left: roll falls by ~8°.
        assert left.roll - base.roll == pytest.approx(-8, abs=3)
        assert right.roll - base.roll == pytest.approx(8, abs=3)
        for other in (mirrored, cropped, left, right):  # the expression does not depend on the framing
            assert other.smile == pytest.approx(base.smile, abs=0.15)
            assert other.mouth_open == pytest.approx(base.mouth_open, abs=0.05)
        assert cropped.share > base.share * 1.15  # same face, smaller picture
        assert 0.15 < base.share < 0.6
    hopper = read_face(face_of(variants["grace_hopper"]))
    collins = read_face(face_of(variants["astronaut"]))
    assert hopper.smile < 0.35 and hopper.mouth_open < 0.05  # closed mouth, a hint of a smile
    assert collins.smile > 0.7 and collins.mouth_open > 0.1  # a broad smile showing teeth


# 2. A turned head turns toward the viewer -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["grace_hopper", "astronaut"])
@pytest.mark.parametrize("degrees", [-25, -12, 12, 25])
def test_a_turned_face_turns_toward_the_viewer_and_its_mirror_the_other_way(
    name: str, degrees: float, variants: dict[str, Image.Image], face_of
) -> None:
    photo, mirror = variants[name], variants[f"{name} mirrored"]
    face, mirror_face = turned(face_of(photo), degrees), turned(face_of(mirror), -degrees)
    yaw = read_face(face).yaw
    assert abs(yaw) > 8 and np.sign(read_face(mirror_face).yaw) == -np.sign(yaw)
    a = curves(plan_motion(photo, None, 4, faces=[face], duration_s=N / FPS, fps=FPS))["yaw"]
    b = curves(plan_motion(mirror, None, 4, faces=[mirror_face], duration_s=N / FPS, fps=FPS))["yaw"]
    for curve, own in ((a, yaw), (b, -yaw)):
        toward = -np.sign(own) * curve  # > 0: toward the viewer
        assert toward.max() > min(0.45 * abs(own), 8.0), f"turns only {toward.max():.1f}° of {own:.1f}°"
        assert toward.min() > -1.5  # never further away than a trace of idle wander
        assert toward.mean() > 0.3 * toward.max()  # held, not a flick
    assert abs(extreme(a) + extreme(b)) < 0.2 * abs(extreme(a)) + 1.0  # the same amount, mirrored


def test_a_photo_turned_by_the_animator_is_turned_back(grace_hopper: Image.Image, portrait_animator) -> None:
    """End to end on pixels: the portrait turned right, then planned from the image alone (and mirrored)."""
    from models.base import AnimationRequest

    frames = portrait_animator.animate(
        grace_hopper, AnimationRequest(motion="turn right a lot", frames=8, seed=0), lambda *a: None
    ).frames
    peak = int(np.argmax(parse_motion("turn right a lot", 0).sample(8, 24)["yaw"]))
    photo = Image.fromarray(frames[peak])
    right = plan_motion(photo, None, 1, duration_s=N / FPS, fps=FPS)
    left = plan_motion(ImageOps.mirror(photo), None, 1, duration_s=N / FPS, fps=FPS)
    assert extreme(curves(right)["yaw"]) < -2.5 < 2.5 < extreme(curves(left)["yaw"])
    assert right.description.startswith("turns toward you")


# 3. Smiles --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["", " mirrored", " tilted +8", " tilted -8", " cropped"])
def test_a_slight_smile_grows_and_a_broad_one_stays(variant: str, variants: dict[str, Image.Image]) -> None:
    for seed in (0, 1):
        slight = curves(plan_motion(variants["grace_hopper" + variant], None, seed))["smile"]
        assert slight.max() > 0.4  # grows...
        assert (
            np.argmax(slight) > 2 and slight[: N // 8].max() < 0.5 * slight.max()
        )  # ...from the photo's own
        broad = curves(plan_motion(variants["astronaut" + variant], None, seed))["smile"]
        assert np.abs(broad).max() < 0.01  # she smiles already: not twice


# 4. A tilted head eases upright -----------------------------------------------------------------------------


@pytest.mark.parametrize("degrees", [-12, -9, 9, 12])
@pytest.mark.parametrize("name", ["grace_hopper", "astronaut"])
def test_a_tilted_head_eases_toward_upright(
    name: str, degrees: float, variants: dict[str, Image.Image], face_of
) -> None:
    photo = tilt(variants[name], degrees)
    roll = read_face(face_of(photo)).roll
    assert abs(roll) > 5 and np.sign(roll) == -np.sign(degrees)  # tilted (the head's own roll is ~3°)
    c = curves(plan_motion(photo, None, 2))
    upright = -np.sign(roll) * c["roll"]
    assert upright.max() > 0.3 * abs(roll) and upright.min() > -1.0
    assert upright.max() < abs(roll) + 1.0  # toward upright, not past it


# 5. A face at the camera: a small, varied idle --------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut", "astronaut mirrored", "astronaut cropped"])
def test_a_face_at_the_camera_gets_a_small_varied_idle(name: str, variants: dict[str, Image.Image]) -> None:
    photo = variants[name]
    yaws = []
    for seed in range(5):
        planned = plan_motion(photo, None, seed, duration_s=N / FPS, fps=FPS)
        c = curves(planned)
        assert planned.description.startswith("a small, natural idle: ")
        assert c["blink"].max() > 0.9 and c["breath"].max() > 0.9
        assert np.abs(c["yaw"]).max() > 0.6  # not nothing...
        gesture = max(
            np.abs(c["gaze_x"]).max() / 0.15,
            np.abs(c["pitch"]).max() / 1.5,
            np.abs(c["roll"]).max() / 1.2,
            c["brow"].max() / 0.2,
        )
        assert gesture > 1.0, "no gesture beyond the wander"
        # ...but small
        assert np.abs(c["yaw"]).max() < 6 and np.abs(c["pitch"]).max() < 5 and np.abs(c["roll"]).max() < 4
        gentle = parse_motion("gentle", seed).sample(N, FPS)
        assert not all(np.allclose(c[k], gentle[k], atol=0.05) for k in ("yaw", "pitch", "roll", "gaze_x"))
        assert not np.allclose(c["yaw"], gentle["yaw"], atol=0.2)
        yaws.append(c["yaw"])
    for i in range(len(yaws)):
        for j in range(i):
            assert not np.allclose(yaws[i], yaws[j], atol=0.2), f"seeds {i} and {j} move alike"


# 6. Each face of a group its own plan and timing ------------------------------------------------------------


def test_each_face_in_a_group_gets_its_own_plan_and_timing(pair_photo: Image.Image) -> None:
    planned = plan_motion(pair_photo, None, 3, duration_s=N / FPS, fps=FPS)
    assert len(planned.plans) == 2
    hopper, collins = curves(planned, 0), curves(planned, 1)  # largest first: Grace Hopper
    assert hopper["smile"].max() > 0.4 and collins["smile"].max() < 0.01  # each read for what it shows
    assert extreme(collins["roll"]) > 2  # the tilted (mirrored, turned clockwise) astronaut straightens
    keys = ("yaw", "pitch", "roll", "gaze_x", "smile", "brow", "blink")
    a = np.concatenate([hopper[k] / (np.abs(hopper[k]).max() + 1e-3) for k in keys])
    b_parts = [collins[k] / (np.abs(collins[k]).max() + 1e-3) for k in keys]
    for shift in range(N):  # not one plan played at another time
        b = np.concatenate([np.roll(part, shift) for part in b_parts])
        assert np.linalg.norm(a - b) > 0.3 * np.linalg.norm(a), f"a copy shifted by {shift} frames"
    blinks = [tuple(np.flatnonzero(np.diff((c["blink"] > 0.5).astype(int)) > 0)) for c in (hopper, collins)]
    assert blinks[0] != blinks[1]  # they don't blink together either
    assert planned.description.endswith("each of the 2 faces in its own way")


# 7. Unique, reproducible, looping, natural ------------------------------------------------------------------


def test_plans_are_reproducible_and_unique_per_photo_and_seed(variants: dict[str, Image.Image]) -> None:
    a = curves(plan_motion(variants["grace_hopper"], None, 11))
    again = curves(plan_motion(variants["grace_hopper"], None, 11))  # analysed afresh
    assert all(np.array_equal(a[k], again[k]) for k in CHANNELS)
    other_seed = curves(plan_motion(variants["grace_hopper"], None, 12))
    assert not np.allclose(a["yaw"], other_seed["yaw"], atol=0.1)
    for name in ("astronaut", "grace_hopper mirrored", "grace_hopper cropped", "grace_hopper tilted +8"):
        other_photo = curves(plan_motion(variants[name], None, 11))
        assert not all(np.allclose(a[k], other_photo[k], atol=0.1) for k in CHANNELS), name


def test_every_plan_starts_at_rest_loops_and_stays_natural(variants: dict[str, Image.Image], face_of) -> None:
    cases = [(photo, None) for photo in variants.values()]
    tilted = variants["grace_hopper tilted +8"]
    for degrees in (-45, -30, 30, 45):  # far past what a plan would copy
        cases.append((tilted, [turned(face_of(tilted), degrees)]))
    for photo, faces in cases:
        for seed in (0, 5, 9):
            for motion in (None, "auto, and nod", "auto and look left"):
                c = curves(plan_motion(photo, motion, seed, faces=faces))
                for key, curve in c.items():
                    assert np.isfinite(curve).all() and curve[0] == pytest.approx(0.0, abs=1e-6), key
                    seam = abs(float(curve[-1] - curve[0]))
                    assert seam <= np.abs(np.diff(curve)).max() * 1.05 + 1e-6, f"{key} jumps at the seam"
                for key, limit in HEAD_LIMITS.items():
                    assert np.abs(c[key]).max() <= limit, (key, seed, motion)
                for key in ("blink", "smile", "brow", "breath"):
                    assert c[key].min() >= 0 and c[key].max() <= 1
                assert np.abs(c["gaze_x"]).max() < 0.8 and np.abs(c["gaze_y"]).max() < 0.6


# 8. Unreadable faces and no face: the gentle idle -----------------------------------------------------------


def _degenerate(face: Face) -> dict[str, Face]:
    collapsed = np.repeat(face.points[:1], 478, axis=0)
    broken = face.points.copy()
    broken[100:110] = np.nan
    return {
        "collapsed": Face(points=collapsed, score=face.score),
        "not finite": Face(points=broken, score=face.score),
        "tiny": face.scaled(0.02),
    }


def test_an_unreadable_face_gets_the_gentle_idle_and_a_log_line_why(
    variants: dict[str, Image.Image], face_of, caplog: pytest.LogCaptureFixture
) -> None:
    photo = variants["grace_hopper"]
    good = face_of(photo)
    for kind, bad in _degenerate(good).items():
        with pytest.raises(Unreadable):
            read_face(bad)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="models.auto_motion"):
            planned = plan_motion(photo, None, 6, faces=[good, bad])
        assert planned.plans[0].name == AUTO and planned.plans[1].name == "gentle", kind
        gentle = parse_motion("gentle", 6).sample(N, FPS, variant=1)
        assert all(np.array_equal(curves(planned, 1)[k], gentle[k]) for k in CHANNELS)
        assert "face 2 gets the gentle idle plan" in caplog.text, kind
    alone = plan_motion(photo, None, 6, faces=[_degenerate(good)["collapsed"]])
    assert alone.plans[0].name == "gentle" and alone.description.startswith("a small, natural idle")


def test_no_face_gets_the_gentle_idle(no_face_photo: Image.Image, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="models.auto_motion"):
        planned = plan_motion(no_face_photo, None, 2)
    assert "no face found" in caplog.text
    assert [p.name for p in planned.plans] == ["gentle"] and planned.name == AUTO
    gentle = parse_motion("gentle", 2).sample(N, FPS)
    assert all(np.array_equal(curves(planned)[k], gentle[k]) for k in CHANNELS)
    assert plan_motion(None, None, 2).plans[0].name == "gentle"
    assert plan_motion(None, "auto", 2, faces=[]).plans[0].name == "gentle"


# 9. Explicit text and presets still win; "auto, and ..." combines -------------------------------------------


def test_text_and_presets_do_exactly_what_they_say(variants: dict[str, Image.Image]) -> None:
    photo = variants["grace_hopper tilted +8"]  # a face auto would straighten and make smile
    text = plan_motion(photo, "look left and smile", 5)
    assert text.name == "custom" and text.description == "looks left and smiles"
    exact = parse_motion("look left and smile", 5).sample(N, FPS)
    assert all(np.array_equal(curves(text)[k], exact[k]) for k in CHANNELS)
    assert curves(text)["yaw"].min() < -5 and curves(text)["yaw"].max() < 1
    for name in PRESETS:
        if name == AUTO:
            continue
        preset = plan_motion(photo, name, 5, faces=[])
        assert preset.name == name and preset.description == PRESETS[name]
        assert all(
            np.array_equal(curves(preset)[k], parse_motion(name, 5).sample(N, FPS)[k]) for k in CHANNELS
        )
    assert plan_motion(photo, "nod slowly", 0).description == "nods slowly"
    with pytest.raises(MotionError):
        plan_motion(photo, "moonwalk", 0)
    with pytest.raises(MotionError):
        plan_motion(photo, "auto and moonwalk", 0)


def test_auto_with_text_adds_those_actions_to_the_plan(variants: dict[str, Image.Image]) -> None:
    photo = variants["grace_hopper tilted +8"]
    auto = plan_motion(photo, None, 3)
    both = plan_motion(photo, "auto, and nod", 3)
    assert both.name == AUTO and both.description == f"{auto.description}, and nods"
    a, b = curves(auto), curves(both)
    assert b["pitch"].min() < -4 < a["pitch"].min()  # the nod...
    assert (
        b["smile"].max() > 0.4 and extreme(b["roll"]) > 1.5
    )  # ...on top of the planned smile and straightening
    assert plan_motion(photo, "auto", 3).description == auto.description
    assert plan_motion(photo, "  ", 3).description == auto.description


def test_description_peaks_intensity_and_json(variants: dict[str, Image.Image], face_of) -> None:
    idle = plan_motion(variants["astronaut"], None, 0)
    photo = variants["grace_hopper"]
    turning = plan_motion(photo, None, 0, faces=[turned(face_of(photo), 25)])
    assert turning.description == "turns toward you, then smiles"
    assert plan_motion(variants["grace_hopper tilted +8"], None, 0).description.startswith("straightens up")
    c = curves(turning)
    assert turning.peaks["yaw"] == pytest.approx(np.abs(c["yaw"]).max(), rel=0.05, abs=0.1)
    assert turning.peaks["smile"] == pytest.approx(c["smile"].max(), rel=0.05, abs=0.02)
    assert set(turning.peaks) == set(CHANNELS)
    assert 0 < idle.intensity < turning.intensity <= 1
    data = turning.to_json()
    assert set(data) == {"name", "description", "peaks", "intensity"}
    assert json.loads(json.dumps(data)) == data
    assert all(type(v) is float for v in [*data["peaks"].values(), data["intensity"]])
