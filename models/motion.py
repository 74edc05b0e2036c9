"""Motion plans: presets and short motion text → smooth, seedable, looping curves over time.

A plan is a set of curves sampled once per output frame: head yaw/pitch/roll (degrees), gaze
(fraction of the eye's half-width), blink (lid closure 0–1), smile, brow raise and breathing (0–1).
Every curve is periodic over the clip and zero at its start, so the first frame is the photo itself
and the last frame flows back into the first (a seamless loop).

Directions are the viewer's: "look left" turns the face toward the left edge of the picture.
"auto" (see models/auto_motion.py) is planned per photo from its faces; here it is only a name that parses
(alone or with actions, "auto, and nod") and the `Move`s that such a plan carries.
This module needs numpy only: the web tier parses motion text at upload time to answer 422 early.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

CHANNELS = ("yaw", "pitch", "roll", "gaze_x", "gaze_y", "blink", "smile", "brow", "breath")

AUTO = "auto"
HEAD_LIMITS = {"yaw": 15.0, "pitch": 10.0, "roll": 8.0}  # degrees a natural, planned motion stays within
# The range of every channel: what a recorded (live-directed) motion may ask for, the live view's sliders
# and look-at, and the amplitude the portrait rig's mesh is made accurate at (models/portrait/mesh.py).
CHANNEL_LIMITS: dict[str, tuple[float, float]] = {
    **{k: (-v, v) for k, v in HEAD_LIMITS.items()},
    "gaze_x": (-1.0, 1.0), "gaze_y": (-1.0, 1.0),
    "blink": (0.0, 1.0), "smile": (0.0, 1.0), "brow": (0.0, 1.0), "breath": (0.0, 1.0),
}  # fmt: skip

PRESETS: dict[str, str] = {
    AUTO: "planned for this photo from what it shows (the default)",
    "gentle": "blinks, breathing and a small natural head movement",
    "smile": "a slow, warm smile that comes and goes",
    "look-around": "turns the head and eyes to one side, then the other",
    "nod": "two gentle nods",
    "blink": "a few natural blinks, head almost still",
    "surprised": "eyebrows rise and the head tips back a little",
}

# Words that name an action. Each maps to the action key used by the planner.
_ACTIONS = {
    "smile": "smile", "smiles": "smile", "smiling": "smile",
    "nod": "nod", "nods": "nod", "nodding": "nod",
    "blink": "blink", "blinks": "blink", "blinking": "blink",
    "look": "look", "looks": "look", "looking": "look", "glance": "look", "glances": "look",
    "turn": "turn", "turns": "turn", "turning": "turn",
    "tilt": "tilt", "tilts": "tilt", "tilting": "tilt",
    "shake": "shake", "shakes": "shake", "shaking": "shake",
    "raise": "brow", "raises": "brow", "eyebrows": "brow", "brows": "brow", "surprised": "brow",
    "surprise": "brow",
    "breathe": "breathe", "breathes": "breathe", "breathing": "breathe",
    "gentle": "gentle", "natural": "gentle", "idle": "gentle", "still": "still", "calm": "still",
    "auto": "auto",
}  # fmt: skip
_DIRECTIONS = {"left": "left", "right": "right", "up": "up", "down": "down", "around": "around"}
_SPEED = {"slowly": 0.6, "slow": 0.6, "quickly": 1.6, "quick": 1.6, "fast": 1.6}
_AMOUNT = {
    "slightly": 0.6, "little": 0.6, "subtle": 0.6, "subtly": 0.6, "softly": 0.6, "gently": 0.6,
    "big": 1.4, "broad": 1.4, "broadly": 1.4, "wide": 1.4, "widely": 1.4, "lot": 1.4,
}  # fmt: skip
_FILLER = {
    "and", "then", "a", "an", "the", "to", "with", "while", "his", "her", "their", "its", "head",
    "eyes", "eye", "bit", "please", "of", "at", "once", "twice", "times", "face", "person", "me",
    "camera", "viewer", "side", "both", "sides", "in", "out",
}  # fmt: skip
_MAX_TEXT = 200


class MotionError(ValueError):
    """Motion text that cannot be understood; the message lists what is understood."""


def understood_words() -> list[str]:
    """Every word (besides filler such as "and", "the") that motion text may use."""
    return sorted(set(_ACTIONS) | set(_DIRECTIONS) | set(_SPEED) | set(_AMOUNT))


def _error(message: str) -> MotionError:
    presets = ", ".join(PRESETS)
    words = ", ".join(understood_words())
    return MotionError(f"{message} Try a preset ({presets}) or a short phrase such as "
                       f"\"look left and smile\" or \"nod slowly\". Understood words: {words}.")  # fmt: skip


@dataclass(frozen=True)
class Action:
    kind: str  # smile | nod | blink | look | tilt | shake | brow
    direction: str | None = None  # left | right | up | down | around
    speed: float = 1.0
    amount: float = 1.0


@dataclass(frozen=True)
class Move:
    """One planned change of a channel: eased from 0 to `peak` from `start`, held, and eased back to 0 by
    `end` (clip phase, 0 < start < end < 1, so the clip still starts at rest and loops). `ramp` is the
    ease's length in clip phase; a ramp of half the span gives a single swell with no hold."""

    channel: str
    peak: float
    start: float
    end: float
    ramp: float


class SampledMotion(Protocol):
    """Anything that gives per-frame curves: a MotionPlan, or a recorded motion
    (models/motion_curves.py's RecordedMotion). The portrait animator renders from either."""

    def sample(self, n: int, fps: float, variant: int = 0) -> dict[str, np.ndarray]:
        """Per-frame curves for every channel in CHANNELS, each float32 of shape (n,)."""
        ...


DEFAULT_WANDER = (3.0, 1.8, 1.2, 0.12)  # peak head wander: yaw, pitch, roll (degrees), gaze_x
ROUND_S = 3.5  # a round of a plan's events lasts about this long (clip_rounds)


@dataclass(frozen=True)
class MotionPlan:
    """What to do over the clip; `sample` turns it into per-frame curves."""

    name: str  # a preset name, "custom" for motion text, or "auto" (planned per photo)
    text: str
    actions: tuple[Action, ...]
    seed: int = 0
    idle: float = 1.0  # amount of the natural head wander (0 = head still)
    # Set by the per-photo planner (models/auto_motion.py); the defaults leave presets and text as they were.
    moves: tuple[Move, ...] = ()
    wander: tuple[float, float, float, float] = DEFAULT_WANDER
    blinks: float = 1.0  # blink rate relative to about one per 3 s; 0 for eyes already closed
    limited: bool = False  # softly keep yaw/pitch/roll within HEAD_LIMITS

    def describe(self) -> str:
        parts = [" ".join(p for p in (a.kind, a.direction) if p) for a in self.actions]
        return ", ".join(["blinks and breathing", *parts]) if parts else "blinks and breathing"

    def sample(self, n: int, fps: float, variant: int = 0) -> dict[str, np.ndarray]:
        """Per-frame curves, each float32 of shape (n,). Frame n (not rendered) equals frame 0.

        `variant` varies the timing for a second or third face so people don't move in lockstep.
        """
        if n < 1 or fps <= 0:
            raise ValueError("need at least one frame and a positive fps")
        rng = np.random.default_rng([self.seed, variant])
        t = np.arange(n, dtype=np.float64) / n  # clip phase in [0, 1)
        dur = n / fps
        c = {k: np.zeros(n) for k in CHANNELS}
        # A longer clip plays the plan's events again (clip_rounds), each round at the speed of a 4 s
        # clip, rather than one round stretched slow; breathing, blinks and wander run on their own time.
        rounds = clip_rounds(dur)
        tr = (t * rounds) % 1.0  # phase within the round

        # Always alive: breathing (3–4.5 s cycles) and blinks (about one per 3 s), unless told otherwise.
        cycles = max(1, round(dur / rng.uniform(3.2, 4.2)))
        c["breath"] += 0.5 - 0.5 * np.cos(2 * np.pi * cycles * t)
        wants_blinks = any(a.kind == "blink" for a in self.actions)
        if self.blinks > 0 or wants_blinks:
            n_blinks = max(1, round(dur / 3.0 * self.blinks)) + (1 if wants_blinks else 0)
            for start in _spread(rng, n_blinks, dur, lo=0.35, hi=dur - 0.55, gap=0.5):
                c["blink"] = np.maximum(c["blink"], _blink(t * dur, start))

        # Natural head wander: slow, small, different every seed.
        idle = self.idle * (0.4 if self.actions else 1.0)
        for key, amp in zip(("yaw", "pitch", "roll", "gaze_x"), self.wander, strict=True):
            c[key] += amp * idle * _wander(t, rng, rounds)
        for m in self.moves:
            c[m.channel] += m.peak * _plateau(tr, m.start, m.end, m.ramp)

        head = [a for a in self.actions if a.kind in ("look", "turn", "nod", "tilt", "shake")]
        windows = _windows(len(head), rng)
        for a, (w0, w1) in zip(head, windows, strict=True):
            _add_head_action(c, a, tr, w0, w1, rng)
        for a in self.actions:
            if a.kind in ("smile", "brow"):
                ramp = 0.9 / a.speed / (dur / rounds)
                start, end = rng.uniform(0.12, 0.2), rng.uniform(0.8, 0.88)
                key = "smile" if a.kind == "smile" else "brow"
                c[key] = np.maximum(c[key], min(1.0, 0.85 * a.amount) * _plateau(tr, start, end, ramp))
                if a.kind == "brow":
                    c["pitch"] += 2.5 * a.amount * _plateau(tr, start, end, ramp)
        c["blink"] = np.clip(c["blink"], 0.0, 1.0)
        for key in ("smile", "brow"):
            c[key] = np.clip(c[key], 0.0, 1.0)
        if self.limited:
            for key, limit in HEAD_LIMITS.items():
                c[key] = _soft_limit(c[key], limit)
        return {k: v.astype(np.float32) for k, v in c.items()}


def _add_head_action(c: dict[str, np.ndarray], a: Action, t: np.ndarray, w0: float, w1: float, rng) -> None:
    amt = a.amount * rng.uniform(0.9, 1.1)
    span = w1 - w0
    ramp = min(0.45 * span, 0.18 / a.speed)
    if a.kind in ("look", "turn") and a.direction in ("left", "right"):
        sign = -1.0 if a.direction == "left" else 1.0
        yaw_deg = 11.0 if a.kind == "turn" else 8.0
        c["yaw"] += sign * yaw_deg * amt * _plateau(t, w0, w1, ramp)
        lead = 0.04  # eyes lead the head
        c["gaze_x"] += sign * 0.55 * amt * _plateau(t, max(0.02, w0 - lead), w1 - lead, ramp * 0.6)
    elif a.kind in ("look", "turn") and a.direction in ("up", "down"):
        sign = 1.0 if a.direction == "up" else -1.0
        c["pitch"] += sign * 7.0 * amt * _plateau(t, w0, w1, ramp)
        c["gaze_y"] += -sign * 0.35 * amt * _plateau(t, max(0.02, w0 - 0.04), w1 - 0.04, ramp * 0.6)
    elif a.kind in ("look", "turn"):  # around (or no direction): one side, then the other
        side = 1.0 if rng.random() < 0.5 else -1.0
        k = max(1, round(a.speed))
        local = np.clip((t - w0) / span, 0.0, 1.0)
        swing = np.sin(2 * np.pi * k * local) * _plateau(t, w0, w1, min(0.1, ramp))
        c["yaw"] += side * 10.0 * amt * swing
        c["gaze_x"] += side * 0.5 * amt * np.sin(2 * np.pi * k * np.clip(local + 0.05, 0, 1)) * (local > 0)
        c["pitch"] += 1.5 * amt * _plateau(t, w0, w1, ramp) * np.sin(np.pi * local) ** 2
    elif a.kind == "nod":
        k = 1 if a.speed < 1 else 2 if a.speed == 1 else 3
        local = np.clip((t - w0) / span, 0.0, 1.0)
        c["pitch"] -= 6.0 * amt * (0.5 - 0.5 * np.cos(2 * np.pi * k * local))
    elif a.kind == "shake":
        k = 1 if a.speed < 1 else 2 if a.speed == 1 else 3
        local = np.clip((t - w0) / span, 0.0, 1.0)
        c["yaw"] += 8.0 * amt * np.sin(2 * np.pi * k * local) * np.sin(np.pi * local)
    elif a.kind == "tilt":
        sign = -1.0 if a.direction == "left" else 1.0
        c["roll"] += sign * 6.0 * amt * _plateau(t, w0, w1, ramp)


def _windows(k: int, rng) -> list[tuple[float, float]]:
    """Split the middle of the clip into k consecutive windows, one per head action."""
    if k == 0:
        return []
    lo, hi = rng.uniform(0.06, 0.1), rng.uniform(0.9, 0.94)
    edges = np.linspace(lo, hi, k + 1)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)  # C2: no jolt at either end


def _plateau(t: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
    """0 → 1 eased over `ramp` from `start`, held, then 1 → 0 ending at `end` (all in clip phase)."""
    ramp = max(min(ramp, (end - start) / 2), 1e-6)
    return _smoothstep((t - start) / ramp) * (1.0 - _smoothstep((t - (end - ramp)) / ramp))


def _soft_limit(x: np.ndarray, limit: float) -> np.ndarray:
    """Unchanged up to 70% of `limit`, then eased toward it (never past it): keeps 0 at 0 and the loop."""
    knee = 0.7 * limit
    over = np.maximum(np.abs(x) - knee, 0.0)
    return np.sign(x) * np.minimum(np.abs(x), knee + (limit - knee) * np.tanh(over / (limit - knee)))


def _blink(seconds: np.ndarray, start: float) -> np.ndarray:
    """A real blink's shape: lids close in ~90 ms, stay ~40 ms, reopen more slowly (~180 ms)."""
    s = seconds - start
    closing = _smoothstep(s / 0.09)
    opening = 1.0 - _smoothstep((s - 0.13) / 0.18)
    return np.where(s < 0.13, closing, opening) * (s >= 0)


def _spread(rng, k: int, dur: float, lo: float, hi: float, gap: float) -> list[float]:
    """k random times in [lo, hi] at least `gap` apart (fewer if the clip is too short)."""
    if hi <= lo:
        return [max(0.0, dur / 2 - 0.15)] if dur > 0.4 else []
    k = max(1, min(k, int((hi - lo) / gap) + 1))
    base = np.linspace(lo, hi, k + 2)[1:-1] if k > 1 else np.array([rng.uniform(lo, hi)])
    jitter = (hi - lo) / (k + 1) * 0.35
    times = np.clip(base + rng.uniform(-jitter, jitter, k), lo, hi)
    return sorted(float(x) for x in times)


def clip_rounds(duration_s: float) -> int:
    """How many times a clip of this length plays its plan's events: once below 5.25 s, twice below
    8.75 s, three times up to 10 s; so a round lasts about as long as the default 4 s clip (2.6 to 5 s)."""
    return max(1, math.floor(duration_s / ROUND_S + 0.5))


def _wander(t: np.ndarray, rng, rounds: int = 1) -> np.ndarray:
    """A slow smooth random periodic curve, zero at t=0, peak magnitude 1: one slow swing per round and
    its octave, and in a longer clip a third, off-beat harmonic so that the rounds differ."""
    f = np.zeros_like(t)
    harmonics = ((rounds, 1.0), (2 * rounds, 0.35)) + (((rounds + 1, 0.5),) if rounds > 1 else ())
    for k, amp in harmonics:
        phase = rng.uniform(0, 2 * np.pi)
        f += amp * (np.sin(2 * np.pi * k * t + phase) - np.sin(phase))
    peak = np.max(np.abs(f))
    return f / peak if peak > 1e-9 else f


def _preset(name: str, seed: int) -> MotionPlan:
    actions: tuple[Action, ...] = {
        AUTO: (),  # the planner fills it in per face; alone, it samples like "gentle"
        "gentle": (),
        "smile": (Action("smile"),),
        "look-around": (Action("look", "around"),),
        "nod": (Action("nod"),),
        "blink": (Action("blink"),),
        "surprised": (Action("brow"),),
    }[name]
    idle = 0.3 if name == "blink" else 1.0
    return MotionPlan(name=name, text=name, actions=actions, seed=seed, idle=idle)


def parse_motion(text: str | None, seed: int | None = None) -> MotionPlan:
    """A preset name or short motion text → a plan. None or "" gives "gentle" (the default where no photo
    is read; with a photo the default is "auto", see models/auto_motion.py). "auto" and text naming it
    ("auto, and nod") give a plan named "auto" holding just the extra actions, for the planner to complete.

    Raises MotionError naming the words it did not understand and listing the ones it does.
    """
    seed = 0 if seed is None else int(seed)
    raw = (text or "").strip()
    if len(raw) > _MAX_TEXT:
        raise _error(f"Motion text is limited to {_MAX_TEXT} characters.")
    key = re.sub(r"[\s_]+", "-", raw.lower())
    if not key:
        return _preset("gentle", seed)
    if key in PRESETS:
        return _preset(key, seed)
    words = re.findall(r"[a-z]+|[^a-z\s,.;!-]+", raw.lower())
    unknown = [w for w in words if w not in _ACTIONS and w not in _DIRECTIONS and w not in _SPEED
               and w not in _AMOUNT and w not in _FILLER]  # fmt: skip
    if unknown:
        listed = ", ".join(f'"{w}"' for w in dict.fromkeys(unknown))
        raise _error(f"Sorry, the motion words {listed} are not understood.")
    actions: list[Action] = []
    idle, speed, amount = 1.0, 1.0, 1.0
    auto = False
    for w in words:
        if w in _SPEED:
            speed = _SPEED[w]
            actions = [_with(a, speed=speed) if a is actions[-1] else a for a in actions]
        elif w in _AMOUNT:
            amount = _AMOUNT[w]
            actions = [_with(a, amount=amount) if a is actions[-1] else a for a in actions]
        elif w in _DIRECTIONS:
            last = actions[-1] if actions else None
            if last and last.kind in ("look", "turn", "tilt") and last.direction is None:
                actions[-1] = _with(last, direction=_DIRECTIONS[w])
            else:
                actions.append(Action("look", _DIRECTIONS[w], speed, amount))  # "left" alone: look left
        elif w in _ACTIONS:
            kind = _ACTIONS[w]
            if kind == AUTO:
                auto = True
                continue
            if kind == "gentle" or kind == "breathe":
                continue
            if kind == "still":
                idle = 0.3
                continue
            if kind == "brow" and actions and actions[-1].kind == "brow":
                continue  # "raise eyebrows" is one action
            actions.append(Action(kind, None, speed, amount))
    # Directionless looks mean "look around"; a tilt without a side tilts right.
    actions = [_with(a, direction="around") if a.kind in ("look", "turn") and a.direction is None else a
               for a in actions]  # fmt: skip
    actions = [
        _with(a, direction="right") if a.kind == "tilt" and a.direction is None else a for a in actions
    ]
    name = AUTO if auto else "custom"
    return MotionPlan(name=name, text=raw, actions=tuple(actions), seed=seed, idle=idle)


def _with(a: Action, **changes) -> Action:
    return Action(**{**a.__dict__, **changes})
