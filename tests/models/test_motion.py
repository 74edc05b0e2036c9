"""Motion plans: presets, motion text, smooth seeded curves that loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.motion import (
    AUTO,
    CHANNELS,
    HEAD_LIMITS,
    PRESETS,
    Action,
    MotionError,
    MotionPlan,
    Move,
    clip_rounds,
    parse_motion,
    understood_words,
)


def test_default_is_gentle_with_blinks_breathing_and_a_small_head_movement() -> None:
    for text in (None, "", "  ", "gentle"):
        plan = parse_motion(text)
        assert plan.name == "gentle"
    c = parse_motion(None, seed=3).sample(96, 24)
    assert set(c) == set(CHANNELS)
    assert c["blink"].max() > 0.95  # at least one full blink in 4 s
    assert c["breath"].max() > 0.95
    assert 0.5 < np.abs(c["yaw"]).max() < 6  # the head moves, a little
    assert c["smile"].max() == 0


@pytest.mark.parametrize("n", [72, 96, 180, 240])
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_starts_at_rest_and_loops(name: str, n: int) -> None:
    c = parse_motion(name, seed=1).sample(n, 24)
    for key, curve in c.items():
        assert curve.shape == (n,) and curve.dtype == np.float32
        assert curve[0] == pytest.approx(0.0, abs=1e-6), key  # the first frame is the photo
        steps = np.abs(np.diff(curve))
        seam = abs(float(curve[0] - curve[-1]))
        assert seam <= steps.max() * 1.05 + 1e-6, f"{key} jumps at the loop seam"


def test_presets_do_what_they_say() -> None:
    smile = parse_motion("smile", 2).sample(96, 24)
    assert smile["smile"].max() > 0.6
    around = parse_motion("look-around", 2).sample(96, 24)
    assert around["yaw"].max() > 5 and around["yaw"].min() < -5  # one side, then the other
    nod = parse_motion("nod", 2).sample(96, 24)
    assert nod["pitch"].min() < -4
    surprised = parse_motion("surprised", 2).sample(96, 24)
    assert surprised["brow"].max() > 0.6


def test_motion_text_maps_to_the_right_curves() -> None:
    c = parse_motion("look left and smile", seed=5).sample(96, 24)
    assert c["yaw"].min() < -5 and c["yaw"].max() < 1  # left only (the viewer's left)
    assert c["gaze_x"].min() < -0.3
    assert c["smile"].max() > 0.6
    right = parse_motion("Turn right!", seed=5).sample(96, 24)
    assert right["yaw"].max() > 5
    up = parse_motion("look up", seed=5).sample(96, 24)
    assert up["pitch"].max() > 4


def test_slowly_means_fewer_nods() -> None:
    def nods(text: str) -> int:
        pitch = parse_motion(text, seed=0).sample(240, 24)["pitch"]
        down = pitch < 0.5 * pitch.min()
        return int(np.sum(down[1:] & ~down[:-1]))

    assert nods("nod slowly") < nods("nod") < nods("nod quickly")


@pytest.mark.parametrize(
    ("seconds", "rounds"), [(3, 1), (4, 1), (5.2, 1), (5.3, 2), (7.5, 2), (8.7, 2), (8.8, 3), (10, 3)]
)
def test_a_clip_plays_its_plan_in_rounds_of_about_a_default_clip(seconds: float, rounds: int) -> None:
    assert clip_rounds(seconds) == rounds


def _events(curve: np.ndarray, threshold: float) -> list[int]:
    """The lengths, in frames, of each stretch where the curve passes the threshold."""
    above = np.concatenate([[False], curve > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(int)))
    return (edges[1::2] - edges[::2]).tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_longer_clip_does_more_at_the_same_pace_not_the_same_motion_slowed(seed: int) -> None:
    short, long = (parse_motion("nod and smile", seed).sample(n, 24) for n in (96, 240))
    deep = 0.5 * short["pitch"].min()
    nods_4s, nods_10s = _events(-short["pitch"], -deep), _events(-long["pitch"], -deep)
    assert len(nods_10s) == 3 * len(nods_4s) >= 3  # three rounds of the plan's nods
    # Each nod about as long as in a 4 s clip (a round of 3.3 s against 4), where one round stretched
    # over 10 s would make every nod 2.5 times as long.
    assert 0.75 < np.median(nods_10s) / np.median(nods_4s) < 1.25
    half_smile = 0.5 * short["smile"].max()
    assert len(_events(long["smile"], half_smile)) == 3 * len(_events(short["smile"], half_smile)) == 3
    # Breathing and blinks keep their own time: more of them, not slower ones.
    assert len(_events(long["blink"], 0.5)) > len(_events(short["blink"], 0.5))
    assert len(_events(long["breath"], 0.5)) >= 2 * len(_events(short["breath"], 0.5))


def test_a_4s_clip_is_one_round_exactly() -> None:
    a = parse_motion("look around", 4).sample(96, 24)
    b = parse_motion("look around", 4).sample(120, 24)  # 5 s: still one round, the same events, slower
    assert clip_rounds(4.0) == clip_rounds(5.0) == 1
    assert _events(a["yaw"], 3) and len(_events(a["yaw"], 3)) == len(_events(b["yaw"], 3))


def test_blink_asks_for_more_blinks() -> None:
    def blinks(text: str) -> int:
        b = parse_motion(text, seed=0).sample(120, 24)["blink"] > 0.5
        return int(np.sum(b[1:] & ~b[:-1]))

    assert blinks("blink") > blinks("gentle") >= 1


def test_seed_makes_it_reproducible_and_varies_it() -> None:
    a = parse_motion("gentle", seed=7).sample(96, 24)
    b = parse_motion("gentle", seed=7).sample(96, 24)
    c = parse_motion("gentle", seed=8).sample(96, 24)
    assert all(np.array_equal(a[k], b[k]) for k in CHANNELS)
    assert not np.allclose(a["yaw"], c["yaw"])
    other_face = parse_motion("gentle", seed=7).sample(96, 24, variant=1)
    assert not np.allclose(a["yaw"], other_face["yaw"])


def test_curves_are_eased_not_mechanical() -> None:
    c = parse_motion("look left", seed=1).sample(96, 24)
    velocity = np.diff(c["yaw"])
    accel = np.diff(velocity)
    assert np.abs(accel).max() < 0.6 * np.abs(velocity).max()  # no sudden starts or stops


def test_unknown_words_are_a_clear_error_listing_what_is_understood() -> None:
    with pytest.raises(MotionError) as e:
        parse_motion("dance wildly and smile")
    message = str(e.value)
    assert '"dance"' in message and '"wildly"' in message
    assert "smile" in message and "look-around" in message and "nod" in message
    assert isinstance(e.value, ValueError)
    with pytest.raises(MotionError):
        parse_motion("x" * 500)


def test_understood_words() -> None:
    words = understood_words()
    assert {"smile", "nod", "blink", "look", "left", "right", "slowly"} <= set(words)
    assert words == sorted(words)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([*understood_words(), "and", "then", "the"]), min_size=1, max_size=6))
def test_any_understood_phrase_gives_bounded_curves(words: list[str]) -> None:
    c = parse_motion(" ".join(words), seed=0).sample(48, 24)
    assert all(np.isfinite(v).all() and v[0] == pytest.approx(0.0, abs=1e-6) for v in c.values())
    assert np.abs(c["yaw"]).max() < 25 and np.abs(c["pitch"]).max() < 20 and np.abs(c["roll"]).max() < 15
    assert c["blink"].min() >= 0 and c["blink"].max() <= 1


def test_auto_is_the_first_preset_and_the_default() -> None:
    assert next(iter(PRESETS)) == AUTO and "(the default)" in PRESETS[AUTO]
    assert "default" not in PRESETS["gentle"]
    plan = parse_motion("auto", seed=3)
    assert plan.name == AUTO and plan.actions == () and plan.moves == ()
    assert AUTO in understood_words()


def test_auto_combines_with_actions() -> None:
    plan = parse_motion("auto, and nod", seed=1)
    assert plan.name == AUTO and [a.kind for a in plan.actions] == ["nod"]
    plan = parse_motion("Auto and look left slowly")
    assert plan.name == AUTO and plan.actions == (Action("look", "left", speed=0.6),)
    assert parse_motion("look left and smile").name == "custom"
    with pytest.raises(MotionError):
        parse_motion("auto and moonwalk")


def test_planned_moves_wander_blinks_and_limits() -> None:
    move = Move("roll", -4.0, start=0.2, end=0.8, ramp=0.15)
    plan = MotionPlan(AUTO, AUTO, (), seed=2, idle=0.0, moves=(move,), blinks=0.0)
    c = plan.sample(100, 25)
    assert c["roll"][0] == 0 and c["roll"][:20].max() == 0 and c["roll"][80:].max() == 0  # at rest outside
    assert c["roll"][35:65] == pytest.approx(-4.0)  # held between the ramps
    assert c["blink"].max() == 0 and c["breath"].max() > 0.95  # no blinks asked for; breathing stays
    assert np.abs(c["yaw"]).max() == 0  # no wander either (idle 0)
    wide = MotionPlan(
        AUTO, AUTO, (), moves=(Move("yaw", 40.0, 0.1, 0.9, 0.2), Move("smile", 2.0, 0.1, 0.9, 0.2))
    )
    unlimited, limited = wide.sample(48, 12), MotionPlan(**{**wide.__dict__, "limited": True}).sample(48, 12)
    assert unlimited["yaw"].max() > 39 and 14 < limited["yaw"].max() <= HEAD_LIMITS["yaw"]
    small = np.abs(unlimited["yaw"]) < 0.7 * HEAD_LIMITS["yaw"]
    assert np.array_equal(limited["yaw"][small], unlimited["yaw"][small])  # small moves untouched
    assert limited["smile"].max() == 1.0  # 0-1 channels stay 0-1
    quiet = MotionPlan("gentle", "gentle", (), seed=2, wander=(0.0, 0.0, 0.0, 0.0)).sample(48, 12)
    assert all(np.abs(quiet[k]).max() == 0 for k in ("yaw", "pitch", "roll", "gaze_x"))
