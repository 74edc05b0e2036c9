"""The clip guard acting on real failures: a random-weight diffusion pipeline renders noise, which fails
the check, gets a calmer second try with a new seed, and then the portrait animator's clip; each mode
(fallback, fail, off) and each end state is driven through models.guard.Guard.render."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import skimage.data
from matplotlib import cbook
from PIL import Image

from bench.tiny_pipelines import build_tiny_svd
from models.base import AnimationError, AnimationRequest, Canceled, Frames, ProgressCallback, Stage
from models.clip_check import ClipChecker
from models.diffusion.animator import svd_motion_bucket
from models.guard import CLIP_CHECK_FAILED, ClipCheckFailed, Guard, GuardMode
from models.portrait import PortraitAnimator
from models.registry import create_animator
from models.video import probe


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")


@pytest.fixture(scope="module")
def checker(clip_checker: ClipChecker) -> ClipChecker:
    return clip_checker


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory, torch_one_thread: None) -> Any:
    """A tiny SVD with random weights, loaded as the worker loads a model folder: it renders noise."""
    animator = create_animator("diffusion", model=str(build_tiny_svd(tmp_path_factory.mktemp("svd"))))
    animator.setup()
    return animator


class Frozen:
    """Hands back the photo, unmoved, unless asked for the calmer second try: then the portrait animator's
    clip. The first clip fails on life; the second passes."""

    name = "frozen"

    def __init__(self, portrait: PortraitAnimator | None) -> None:
        self.portrait = portrait  # None: frozen on every try
        self.requests: list[AnimationRequest] = []

    def setup(self) -> None:
        pass

    def animate(self, photo: Image.Image, request: AnimationRequest, progress: ProgressCallback) -> Frames:
        self.requests.append(request)
        if request.calmer and self.portrait is not None:
            return self.portrait.animate(photo, request, progress)
        w, h = photo.size
        still = np.asarray(photo.convert("RGB").crop((0, 0, w - w % 2, h - h % 2)))
        return Frames(frames=np.repeat(still[None], 72, axis=0), fps=24)


def bucket_calls(animator: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The motion bucket and seed of every call of the animator's pipeline."""
    calls: list[dict[str, Any]] = []
    cls = type(animator.pipe)
    original = cls.__call__

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append({"bucket": kwargs["motion_bucket_id"], "seed": kwargs["generator"].initial_seed()})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__call__", spy)
    return calls


def stages(events: list[tuple[Stage, float, str]]) -> list[str]:
    seen: list[str] = []
    for stage, _, _ in events:
        if not seen or seen[-1] != stage.value:
            seen.append(stage.value)
    return seen


def test_noise_trips_the_guard_and_the_full_size_animator_makes_the_clip(
    noise, photo, checker, full_size_animator, monkeypatch
) -> None:
    calls = bucket_calls(noise, monkeypatch)
    events: list[tuple[Stage, float, str]] = []
    guard = Guard(checker, fallback=lambda: full_size_animator)
    request = AnimationRequest(motion="nod", seed=11)  # motion text: the same bucket whatever the seed
    checked = guard.render(noise, photo, request, lambda *e: events.append(e))

    check = checked.check
    assert check.passed and check.rendered_by == "portrait"
    assert check.identity_distance is not None and check.identity_distance < 0.45
    fallback = check.fallback
    assert fallback is not None and fallback["action"] == "portrait"
    assert "face kept" in fallback["reason"] and "face kept" in fallback["retry_failed"]
    # The second try: another seed, half the motion bucket.
    assert [c["seed"] for c in calls] == [11, fallback["retry_seed"]] and fallback["retry_seed"] != 11
    bucket = svd_motion_bucket("nod")
    assert [c["bucket"] for c in calls] == [bucket, bucket // 2]
    info = probe(checked.clip.mp4)
    assert (info.width, info.height) == photo.size  # the portrait animator's clip, not the model's 64²
    # Three renders, each checked; the later ones say which try they are.
    assert stages(events).count("checking") == 3
    assert any(d.startswith("second try") for _, _, d in events)
    assert any(d.startswith("portrait fallback") for _, _, d in events)


def test_fail_mode_fails_the_job_at_once(noise, photo, checker, monkeypatch) -> None:
    calls = bucket_calls(noise, monkeypatch)
    guard = Guard(checker, mode=GuardMode.FAIL)
    with pytest.raises(ClipCheckFailed) as failed:
        guard.render(noise, photo, AnimationRequest(seed=3), lambda *e: None)
    assert failed.value.code == CLIP_CHECK_FAILED and len(calls) == 1
    check = failed.value.check
    assert not check.passed and check.fallback is None and check.rendered_by == "diffusion"
    assert check.faces[0].kept < 0.9 and "face kept" in failed.value.message


def test_off_mode_delivers_and_reports_a_failed_check(noise, photo, checker) -> None:
    checked = Guard(checker, mode=GuardMode.OFF).render(
        noise, photo, AnimationRequest(seed=3), lambda *e: None
    )
    assert not checked.check.passed and checked.check.failures
    assert checked.check.fallback is None and checked.check.rendered_by == "diffusion"


def test_a_calmer_second_try_that_passes_is_kept(photo, checker, full_size_animator) -> None:
    frozen = Frozen(full_size_animator)
    guard = Guard(checker, fallback=lambda: pytest.fail("no fallback needed"))
    checked = guard.render(frozen, photo, AnimationRequest(motion="smile", seed=5), lambda *e: None)
    assert checked.check.passed and checked.check.rendered_by == "frozen"
    assert checked.check.fallback is not None and checked.check.fallback["action"] == "retried"
    assert checked.check.fallback["reason"].startswith("life")
    first, second = frozen.requests
    assert (first.calmer, second.calmer) == (False, True) and first.seed != second.seed
    assert second.motion == "smile"


def test_without_a_face_the_fallback_cannot_help_and_the_job_fails(checker, full_size_animator) -> None:
    faceless = Image.fromarray(skimage.data.coffee())
    guard = Guard(checker, fallback=lambda: full_size_animator)
    with pytest.raises(ClipCheckFailed) as failed:
        guard.render(Frozen(None), faceless, AnimationRequest(seed=1), lambda *e: None)
    check = failed.value.check
    assert check.identity_distance is None and check.faces == []
    assert check.fallback is not None and check.fallback["error"].startswith("no_face")


def test_a_cancel_during_the_check_stops_the_guard(photo, checker, full_size_animator) -> None:
    def progress(stage: Stage, fraction: float, detail: str = "") -> None:
        if stage is Stage.CHECKING and fraction > 0.3:
            raise Canceled()

    guard = Guard(checker, fallback=lambda: full_size_animator)
    with pytest.raises(Canceled):
        guard.render(Frozen(full_size_animator), photo, AnimationRequest(seed=1), progress)


@pytest.fixture
def readings(monkeypatch) -> list[object]:
    """The animator's reading handed to ClipChecker.reference, one entry per call."""
    seen: list[object] = []
    original = ClipChecker.reference

    def counted(self, p, analysis=None):
        seen.append(analysis)
        return original(self, p, analysis)

    monkeypatch.setattr(ClipChecker, "reference", counted)
    return seen


def test_the_photo_is_analysed_once_for_every_try(photo, checker, full_size_animator, readings) -> None:
    Guard(checker).render(Frozen(full_size_animator), photo, AnimationRequest(seed=2), lambda *e: None)
    assert len(readings) == 1


def test_an_animation_error_is_not_the_guards_business(photo, checker) -> None:
    class Broken(Frozen):
        def animate(self, photo, request, progress):  # type: ignore[override]
            raise AnimationError("no_face", "nothing here")

    with pytest.raises(AnimationError) as raised:
        Guard(checker).render(Broken(PortraitAnimator()), photo, AnimationRequest(), lambda *e: None)
    assert raised.value.code == "no_face" and not isinstance(raised.value, ClipCheckFailed)


def test_the_portrait_animators_reading_of_the_photo_is_reused(
    photo, checker, full_size_animator, readings
) -> None:
    checked = Guard(checker).render(full_size_animator, photo, AnimationRequest(seed=2), lambda *e: None)
    assert checked.check.passed, checked.check.failures
    (reading,) = readings
    assert reading is checked.clip.photo_analysis and reading is not None and reading.faces  # type: ignore[attr-defined]
