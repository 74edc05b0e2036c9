"""Recorded motion curves: validation with clear messages, the loop-closing formula, exact samples, and
the plan written from them (words, peaks, intensity)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from models.motion import CHANNEL_LIMITS, CHANNELS
from models.motion_curves import (
    CURVES_FPS,
    MAX_CURVES_BYTES,
    MAX_SAMPLES,
    MIN_SAMPLES,
    CurvesError,
    RecordedMotion,
    close_loop,
    curves_rules,
    parse_curves,
    planned_motion,
)


def _field(channels: dict[str, Any], **extra: Any) -> str:
    return json.dumps({"fps": 24, "channels": channels, **extra})


def _turn_then_smile(n: int = 96) -> dict[str, list[float]]:
    t = np.arange(n) / n
    yaw = -12.0 * np.sin(np.pi * np.clip(t / 0.45, 0, 1))  # toward the picture's left, back by 45%
    smile = 0.8 * np.clip(np.sin(np.pi * np.clip((t - 0.55) / 0.35, 0, 1)), 0, 1)
    return {"yaw": yaw.tolist(), "smile": smile.tolist()}


def test_good_curves_parse_and_round_trip() -> None:
    curves = _turn_then_smile()
    recorded = parse_curves(_field(curves))
    assert recorded.name == "recorded" and recorded.samples == 96 and recorded.duration_s == 4.0
    assert recorded.to_json() == {"fps": 24, "channels": curves}
    assert RecordedMotion.from_json(recorded.to_json()) == recorded
    assert parse_curves(json.dumps({"channels": curves})) == recorded  # fps may be left out
    ints = parse_curves(_field({"blink": [0] * 72}))  # whole numbers are numbers too
    assert ints.curves["blink"] == (0.0,) * 72


@pytest.mark.parametrize(
    ("field", "words"),
    [
        (_field({"nod": [0.0] * 96}), ["Unknown channel 'nod'", "yaw, pitch"]),
        (_field({}), ["name no channel"]),
        (json.dumps({"fps": 24}), ['need "channels"']),
        (json.dumps([1, 2]), ["must be a JSON object"]),
        (_field({"yaw": [0.0] * 96}, speed=2), ["Unknown field 'speed'"]),
        (
            _field({"yaw": [0.0] * 96, "smile": [0.0] * 95}),
            ["same number of samples", "yaw has 96", "smile has 95"],
        ),
        (_field({"yaw": [0.0] * (MIN_SAMPLES - 1)}), ["(yaw) have 71 samples", "72 to 240"]),
        (_field({"yaw": [0.0] * (MAX_SAMPLES + 1)}), ["241 samples", "72 to 240"]),
        (
            _field({"yaw": [0.0] * 95 + [15.5]}),
            ["'yaw', sample 95", "15.5 is out of range", "-15 to 15 degrees"],
        ),
        (_field({"smile": [0.0] * 10 + [-0.1] + [0.0] * 85}), ["'smile', sample 10", "from 0 to 1"]),
        (
            _field({"gaze_x": [0.0] * 3 + ["left"] + [0.0] * 92}),
            ["'gaze_x', sample 3", '"left" is not a number'],
        ),
        (_field({"blink": [0.0] * 5 + [None] + [0.0] * 90}), ["'blink', sample 5", "null is not a number"]),
        (_field({"blink": [0.0] * 5 + [True] + [0.0] * 90}), ["'blink', sample 5", "true is not a number"]),
        (_field({"brow": "0,0,0"}), ["'brow' must be a list"]),
        (
            '{"channels": {"pitch": [' + ", ".join(["0"] * 7 + ["NaN"] + ["0"] * 88) + "]}}",
            ["'pitch', sample 7", "not finite"],
        ),
        ('{"channels": {"roll": [' + ", ".join(["1e999"] * 96) + "]}}", ["'roll', sample 0", "not finite"]),
        (_field({"yaw": [0.0] * 96}).replace('"fps": 24', '"fps": 30'), ["fps must be 24", "not 30"]),
        ('{"channels": {"yaw": [0, 0', ["not valid JSON"]),
        ("", ["not valid JSON"]),
    ],
)
def test_bad_curves_are_refused_with_a_clear_message(field: str, words: list[str]) -> None:
    with pytest.raises(CurvesError) as refused:
        parse_curves(field)
    for w in words:
        assert w in str(refused.value), str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_the_size_limit_is_on_the_field_bytes() -> None:
    big = _field({k: [0.0] * MAX_SAMPLES for k in CHANNELS}).replace("0.0", "0." + "0" * 30)
    assert len(big) > MAX_CURVES_BYTES
    with pytest.raises(CurvesError, match=r"bytes; at most 49152 \(48 KiB\)"):
        parse_curves(big)
    # Every channel at the longest length, each sample a full-precision float as a browser writes it.
    rng = np.random.default_rng(0)
    full = {
        k: [float(v) for v in rng.uniform(-0.99, -0.01 if k.startswith("gaze") else 0.0, MAX_SAMPLES)]
        for k in CHANNELS
    }
    full = {k: [abs(v) if CHANNEL_LIMITS[k][0] == 0 else v for v in vs] for k, vs in full.items()}
    fits = _field(full)
    assert MAX_CURVES_BYTES * 0.6 < len(fits) <= MAX_CURVES_BYTES
    assert parse_curves(fits).samples == MAX_SAMPLES  # every channel at the longest length fits


def test_close_loop_is_the_specified_formula() -> None:
    rng = np.random.default_rng(1)
    for n in (72, 96, 120, 8, 5):
        c = rng.uniform(-5, 5, n)
        out = close_loop({"yaw": c})["yaw"]
        span = min(12, n // 4)
        assert np.array_equal(close_loop(c.tolist()), out)  # one curve alone closes the same way
        assert np.array_equal(out[: n - span], c[: n - span])  # the first n-L samples are untouched
        for i in range(n - span, n):
            x = (i - (n - span) + 1) / (span + 1)
            w = x * x * (3 - 2 * x)
            assert out[i] == pytest.approx(c[i] + w * (c[0] - c[i]), abs=1e-12)
    # Continuity at the loop: a curve that ends far from its start ends close to it, by small steps.
    ramp = np.linspace(0.0, 10.0, 96)
    closed = close_loop({"yaw": ramp})["yaw"]
    step_in_loop = abs(closed[0] - closed[-1])
    assert step_in_loop < 1.0 < abs(ramp[0] - ramp[-1])
    assert np.abs(np.diff(closed)).max() < 2.0  # no jump inside the eased tail either
    assert close_loop({"blink": np.zeros(72)})["blink"].tolist() == [0.0] * 72


def test_sample_gives_exactly_the_samples_loop_closed_for_every_channel() -> None:
    curves = _turn_then_smile()
    curves["blink"] = [0.0] * 40 + [1.0] * 4 + [0.0] * 52
    recorded = parse_curves(_field(curves))
    out = recorded.sample(96, 24)
    assert set(out) == set(CHANNELS)
    assert all(v.dtype == np.float32 and v.shape == (96,) for v in out.values())
    closed = close_loop({k: np.asarray(v) for k, v in curves.items()})
    for k in CHANNELS:
        expected = closed[k] if k in curves else np.zeros(96)
        assert np.array_equal(out[k], expected.astype(np.float32)), k
    assert np.array_equal(out["yaw"][:84], np.float32(curves["yaw"][:84]))  # untouched before the tail
    # No variant: every face gets the same curves; no blink or wander of its own.
    assert all(np.array_equal(recorded.sample(96, 24, variant=3)[k], out[k]) for k in CHANNELS)
    assert out["blink"].sum() == 4.0 and out["pitch"].max() == 0.0


def test_sample_resamples_periodically_only_when_asked_for_another_length() -> None:
    yaw = 10 * np.sin(2 * np.pi * np.arange(96) / 96)
    recorded = parse_curves(_field({"yaw": yaw.tolist()}))
    half = recorded.sample(48, 12)["yaw"]
    assert half.shape == (48,)
    assert np.allclose(half, recorded.sample(96, 24)["yaw"][::2], atol=1e-5)
    assert recorded.sample(192, 48)["yaw"][1] == pytest.approx((yaw[0] + yaw[1]) / 2, abs=1e-5)


def test_a_clip_longer_than_the_recording_plays_it_once_then_eases_back_and_holds() -> None:
    curves = _turn_then_smile(96)  # 4 s that end away from where they start
    curves["yaw"] = (np.asarray(curves["yaw"]) + 4.0).tolist()  # starts at 4°, ends at 4°: moved in between
    curves["roll"] = np.linspace(0.0, 6.0, 96).tolist()  # ends 6° from its start
    recorded = parse_curves(_field(curves))
    out = recorded.sample(240, 24)  # a 10 s clip
    assert all(v.shape == (240,) and v.dtype == np.float32 for v in out.values())
    # The recording as sent, every sample, with no loop closing inside it.
    for k in ("yaw", "roll", "smile"):
        assert np.array_equal(out[k][:96], np.float32(curves[k])), k
    # Then one second (24 frames) of smooth ease back to the first sample, by small steps...
    ease = out["roll"][96:120]
    assert ease[-1] == 0.0 and np.all(np.diff(ease) <= 0) and np.abs(np.diff(out["roll"])).max() < 0.6
    # ...and held there to the end, so the last frame meets the first: the clip loops.
    assert np.all(out["roll"][120:] == 0.0) and np.all(out["yaw"][120:] == np.float32(curves["yaw"][0]))
    # The same clip at another frame rate follows the same path in time.
    half = recorded.sample(120, 12)["roll"]
    assert np.allclose(half, out["roll"][::2], atol=1e-5)
    # Fewer than LOOP_SAMPLES frames to spare: the last sample is held and the loop closed as ever.
    short = recorded.sample(100, 24)["roll"]
    assert np.array_equal(short[:88], np.float32(curves["roll"][:88]))
    assert abs(short[-1] - short[0]) < 0.6


def test_the_plan_describes_the_curves_in_time_order() -> None:
    plan = planned_motion(parse_curves(_field(_turn_then_smile())))
    assert plan.name == "recorded"
    assert plan.description == "turns toward the left, then smiles"
    assert plan.peaks["yaw"] == pytest.approx(12.0, abs=0.05) and plan.peaks["smile"] == pytest.approx(
        0.8, abs=0.01
    )
    assert plan.peaks["pitch"] == 0.0 and set(plan.peaks) == set(CHANNELS)
    assert plan.intensity == pytest.approx(0.8, abs=0.01)  # 12 of 15 degrees
    assert plan.to_json()["name"] == "recorded" and len(plan.plans) == 1

    t = np.arange(96) / 96
    bump = np.sin(np.pi * np.clip((t - 0.1) / 0.4, 0, 1))
    look_up = planned_motion(
        parse_curves(_field({"pitch": (6 * bump).tolist(), "brow": (0.6 * bump).tolist()}))
    )
    assert look_up.description == "looks up and raises the brows"
    blinks = [0.0] * 96
    for start in (20, 60):
        blinks[start : start + 3] = [1.0] * 3
    assert planned_motion(parse_curves(_field({"blink": blinks}))).description == "blinks twice"
    still = planned_motion(parse_curves(_field({"breath": (0.5 - 0.5 * np.cos(2 * np.pi * t)).tolist()})))
    assert still.description == "holds almost still, breathing" and still.intensity == 0.0


def test_a_busy_recording_is_summarised_each_kind_of_move_once() -> None:
    """A recording that wanders (the pointer over the portrait for 5 s) reads as a summary, not a run-on
    list of every glance in turn."""
    t = np.arange(120) / 24

    def bump(a: float, b: float) -> np.ndarray:
        return np.sin(np.pi * np.clip((t - a) / (b - a), 0, 1))

    wander = {
        "gaze_y": 0.6 * bump(0.0, 1.0) - 0.5 * bump(3.0, 4.0),
        "gaze_x": 0.6 * bump(0.1, 1.2) - 0.6 * bump(2.0, 3.0) + 0.5 * bump(3.5, 4.5),
        "yaw": 8 * bump(0.2, 1.5) - 7 * bump(2.2, 3.4) + 6 * bump(3.6, 4.8),
        "pitch": -5 * bump(0.3, 2.0),
        "smile": 0.8 * bump(1.0, 2.0) + 0.8 * bump(3.0, 4.0),
        "blink": (np.abs(t - 2.5) < 0.06).astype(float).tolist(),
    }
    text = planned_motion(parse_curves(_field({k: np.asarray(v).tolist() for k, v in wander.items()})))
    described = text.description
    assert described == "glances around, looks around, smiles twice and blinks", described
    assert "then" not in described and described.count("glances") == 1


def test_intensity_follows_the_peaks_relative_to_the_limits() -> None:
    t = np.arange(96) / 96
    bump = np.sin(np.pi * t)
    small = planned_motion(parse_curves(_field({"roll": (2 * bump).tolist()}))).intensity
    large = planned_motion(parse_curves(_field({"roll": (8 * bump).tolist()}))).intensity
    assert small == pytest.approx(2 / 8, abs=0.01) and large == pytest.approx(1.0)
    smile = planned_motion(parse_curves(_field({"smile": bump.tolist()}))).intensity
    assert smile == pytest.approx(0.7, abs=0.01)  # the face's moves weigh less than the head's
    assert 0.0 <= small < smile < large <= 1.0


def test_the_rules_a_client_reads() -> None:
    rules = curves_rules()
    assert rules["fps"] == CURVES_FPS == 24
    assert (rules["min_samples"], rules["max_samples"], rules["max_bytes"]) == (72, 240, 48 * 1024)
    assert rules["channels"] == list(CHANNELS)
    assert rules["limits"] == {k: [lo, hi] for k, (lo, hi) in CHANNEL_LIMITS.items()}
    assert all(math.isfinite(v) for lo_hi in rules["limits"].values() for v in lo_hi)
