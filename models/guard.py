"""The clip guard: every clip is checked (models.clip_check) before anyone sees it, and a failed check
is acted on.

- `fallback` (the default): render once more with a new seed and a calmer motion; if that fails too,
  the portrait animator makes the clip (it warps the photo itself, so the person stays the person).
  A clip whose every try failed ends the job as `clip_check_failed`.
- `fail`: a failed check ends the job as `clip_check_failed` at once.
- `off`: the clip is measured and its figures reported, and it is delivered whatever they say (the
  visitor is told on the result when it failed).

Every try runs under the caller's progress callback, so the job's time limit covers them all and a
cancel stops any of them within one step.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from models.base import AnimationError, AnimationRequest, Animator, Clip, ProgressCallback, Stage
from models.clip_check import CheckLimits, ClipCheck, ClipChecker, PhotoReference, Promise
from models.render import render_clip

CLIP_CHECK_FAILED = "clip_check_failed"
FALLBACK_ANIMATOR = "portrait"
_RETRY_SEED_STEP = 7919  # the second try's seed: another, but the same one every time for a given seed


class GuardMode(str, enum.Enum):
    FALLBACK = "fallback"
    FAIL = "fail"
    OFF = "off"


class ClipCheckFailed(AnimationError):
    """No clip passed the check; `check` is the last clip's (the job stores it)."""

    def __init__(self, check: ClipCheck) -> None:
        super().__init__(
            CLIP_CHECK_FAILED,
            "The animation did not pass the quality check (" + "; ".join(check.failures) + ").",
        )
        self.check = check


@dataclass
class Checked:
    clip: Clip
    check: ClipCheck


@dataclass
class Guard:
    """How clips are judged and what happens to one that fails. `fallback` builds (and sets up) the
    portrait animator on first need; None: no fallback (the second try is the last)."""

    checker: ClipChecker
    mode: GuardMode = GuardMode.FALLBACK
    limits: CheckLimits = CheckLimits()
    fallback: Callable[[], Animator] | None = None

    def render(
        self, animator: Animator, photo: Image.Image, request: AnimationRequest, progress: ProgressCallback
    ) -> Checked:
        """Render `photo` with `animator` and check the clip; act on a failed check as `mode` says.
        Raises ClipCheckFailed when no clip passes (not in `off` mode)."""
        photo = photo.convert("RGB")
        reference: list[PhotoReference] = []  # the photo is analysed once, for every try

        def attempt(who: Animator, req: AnimationRequest, label: str) -> Checked:
            clip = render_clip(who, photo, req, _labelled(progress, label))
            progress(Stage.CHECKING, 0.0, label or "checking the clip")
            t0 = time.perf_counter()
            if not reference:
                reference.append(self.checker.reference(photo, clip.photo_analysis))
            analysed_s = time.perf_counter() - t0  # the photo's analysis counts with the first check
            check = self.checker.check(
                reference[0],
                clip.mp4,
                frames=clip.frame_count,
                promise=Promise(moves=clip.moves, loops=clip.loops, steady=clip.steady),
                limits=self.limits,
                progress=lambda f: progress(Stage.CHECKING, f, label),
            )
            check.rendered_by = clip.animator or who.name
            check.seconds += analysed_s
            return Checked(clip, check)

        first = attempt(animator, request, "")
        if first.check.passed or self.mode is GuardMode.OFF:
            return first
        if self.mode is GuardMode.FAIL:
            raise ClipCheckFailed(first.check)
        why = "; ".join(first.check.failures)
        seed = ((request.seed or 0) + _RETRY_SEED_STEP) % 2**31
        second = attempt(animator, replace(request, seed=seed, calmer=True), "second try")
        if second.check.passed:
            second.check.fallback = _did("retried", why, seed=seed)
            return second
        if self.fallback is None or animator.name == FALLBACK_ANIMATOR:
            second.check.fallback = _did("retried", why, seed=seed, then="; ".join(second.check.failures))
            raise ClipCheckFailed(second.check)
        why_again = "; ".join(second.check.failures)
        try:
            third = attempt(self.fallback(), request, "portrait fallback")
        except AnimationError as exc:  # e.g. no face: the portrait animator cannot animate this photo
            second.check.fallback = _did(FALLBACK_ANIMATOR, why, seed=seed, then=why_again)
            second.check.fallback["error"] = f"{exc.code}: {exc.message}"
            raise ClipCheckFailed(second.check) from exc
        third.check.fallback = _did(FALLBACK_ANIMATOR, why, seed=seed, then=why_again)
        if not third.check.passed:
            raise ClipCheckFailed(third.check)
        return third


def _did(action: str, why: str, *, seed: int, then: str | None = None) -> dict[str, Any]:
    """What the guard did: `retried` (a new seed, calmer) or `portrait` (after a retry that failed too)."""
    done: dict[str, Any] = {"action": action, "reason": why, "retry_seed": seed}
    if then is not None:
        done["retry_failed"] = then
    return done


def _labelled(progress: ProgressCallback, label: str) -> ProgressCallback:
    """The progress callback, with `label` ("second try") before every detail of a later try."""
    if not label:
        return progress

    def labelled(stage: Stage, fraction: float, detail: str = "") -> None:
        progress(stage, fraction, f"{label}: {detail}" if detail else label)

    return labelled
