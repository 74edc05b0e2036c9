"""The diffusion animator on tiny random-weight pipelines (SVD and Wan 2.1; LTX and CogVideoX end to end
only), on a CPU.

Each pipeline is saved to a folder and loaded the way the worker and the CLI load it
(`create_animator("diffusion", model=DIR)`, then `render_clip`), so the whole path runs: photo fit →
vision/text encoders → denoiser → VAE decode → colour matching → frame-rate conversion → H.264.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.tiny_pipelines import build_tiny_cogvideox, build_tiny_ltx, build_tiny_svd, build_tiny_wan
from models.auto_motion import AUTO, PlannedMotion, plan_motion
from models.base import AnimationError, AnimationRequest, Canceled, Stage
from models.diffusion.animator import (
    SVD_CALM_BUCKET,
    SVD_LIVELY_BUCKET,
    DiffusionAnimator,
    motion_prompt,
    svd_motion_bucket,
)
from models.diffusion.families import resolve_family
from models.diffusion.speed import SpeedSettings
from models.face import FaceAnalyzer
from models.motion import parse_motion
from models.registry import create_animator
from models.render import render_clip
from models.video import AI_GENERATED_COMMENT, probe

FAMILY_OF = {"svd": "svd", "wan": "wan2.1"}
BUILDERS = {"svd": build_tiny_svd, "wan": build_tiny_wan}

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipelines")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def animators(folders: dict[str, Path]) -> dict[str, DiffusionAnimator]:
    out = {}
    for name, folder in folders.items():
        animator = create_animator("diffusion", model=str(folder))  # the worker's and the CLI's call
        animator.setup()
        out[name] = animator
    return out


class Recorder:
    """A progress callback that records events and can cancel at a chosen detail."""

    def __init__(self, cancel_at: str | None = None) -> None:
        self.events: list[tuple[Stage, float, str]] = []
        self.cancel_at = cancel_at

    def __call__(self, stage: Stage, fraction: float, detail: str = "") -> None:
        self.events.append((stage, fraction, detail))
        if stage is Stage.ANIMATING and detail == self.cancel_at:
            raise Canceled()

    def stages(self) -> list[Stage]:
        seen: list[Stage] = []
        for stage, _, _ in self.events:
            if not seen or seen[-1] is not stage:
                seen.append(stage)
        return seen

    def steps(self) -> list[str]:
        return [d for s, _, d in self.events if s is Stage.ANIMATING and d]


@pytest.mark.parametrize("name", ["svd", "wan"])
def test_render_clip_end_to_end(name: str, animators: dict, portrait: Image.Image) -> None:
    animator = animators[name]
    assert animator.family.name == FAMILY_OF[name]
    progress = Recorder()
    clip = render_clip(animator, portrait, AnimationRequest(seed=7, motion="look left and smile"), progress)

    info = probe(clip.mp4)
    assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0)
    assert (info.width, info.height) == (64, 64)  # the tiny folder's vivify.json default size
    assert info.faststart and info.comment == AI_GENERATED_COMMENT
    assert info.frame_count == clip.frame_count
    assert 3.0 <= info.duration_s <= 5.0 and abs(info.duration_s - clip.frame_count / 24) < 0.05
    assert clip.poster_jpeg[:2] == b"\xff\xd8"

    assert progress.stages() == [
        Stage.ANALYZING,
        Stage.ANIMATING,
        Stage.DECODING,
        Stage.POSTPROCESSING,
        Stage.ENCODING,
    ]
    assert progress.steps() == ["0/2", "1/2", "2/2"]
    fractions = [f for s, f, _ in progress.events if s is Stage.ANIMATING]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    for stage in ("analyzing", "animating", "decoding", "postprocessing", "encoding"):
        assert clip.stage_seconds[stage] > 0, stage


@pytest.mark.parametrize(
    ("build", "family"),
    [
        (build_tiny_ltx, "ltx"),
        (lambda p: build_tiny_ltx(p, condition=True), "ltx-condition"),
        (build_tiny_cogvideox, "cogvideox"),
    ],
)
def test_other_families_render_through_the_same_path(
    build: Callable[[Path], Path], family: str, tmp_path: Path, portrait: Image.Image
) -> None:
    animator = create_animator("diffusion", model=str(build(tmp_path / family)))
    animator.setup()
    assert animator.family.name == family
    progress = Recorder()
    clip = render_clip(animator, portrait, AnimationRequest(seed=1, motion="smile", steps=3), progress)
    info = probe(clip.mp4)
    assert (info.codec, info.pix_fmt, info.fps, info.width, info.height) == ("h264", "yuv420p", 24.0, 64, 64)
    assert info.frame_count == clip.frame_count and 3.0 <= info.duration_s <= 5.0
    assert progress.steps()[-1] == "3/3"


@pytest.mark.parametrize(
    ("name", "request_", "shape"),
    [
        ("svd", AnimationRequest(seed=1, frames=5, size=(128, 64), steps=3), (5, 64, 128, 3)),
        ("wan", AnimationRequest(seed=1, frames=5, size=(48, 32), steps=3), (5, 32, 48, 3)),
    ],
)
def test_request_overrides_family_defaults(
    name: str, request_: AnimationRequest, shape: tuple, animators: dict, portrait: Image.Image
) -> None:
    progress = Recorder()
    result = animators[name].animate(portrait, request_, progress)
    assert result.frames.shape == shape
    assert progress.steps()[-1] == "3/3"
    assert 3.0 <= shape[0] / result.fps <= 5.0  # short native clips are slowed to at least 3 s


@pytest.mark.parametrize("name", ["svd", "wan"])
def test_same_seed_same_frames_other_seed_other_frames(
    name: str, animators: dict, portrait: Image.Image
) -> None:
    run = lambda seed: animators[name].animate(portrait, AnimationRequest(seed=seed), Recorder()).frames  # noqa: E731
    a, b, c = run(11), run(11), run(12)
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 0.5


@pytest.mark.parametrize("name", ["svd", "wan"])
def test_cancel_stops_within_one_step(name: str, animators: dict, portrait: Image.Image) -> None:
    animator = animators[name]
    calls: list[int] = []
    denoiser = animator.pipe.unet if name == "svd" else animator.pipe.transformer
    handle = denoiser.register_forward_hook(lambda *_: calls.append(1))
    try:
        animator.animate(portrait, AnimationRequest(seed=3, steps=4), Recorder())
        per_step = len(calls) / 4
        calls.clear()
        progress = Recorder(cancel_at="1/4")
        with pytest.raises(Canceled):
            animator.animate(portrait, AnimationRequest(seed=3, steps=4), progress)
    finally:
        handle.remove()
    assert len(calls) == per_step  # exactly one step's denoiser work ran
    assert progress.steps()[-1] == "1/4"
    assert Stage.DECODING not in progress.stages()


def test_cancel_before_denoising(animators: dict, portrait: Image.Image) -> None:
    def progress(stage: Stage, fraction: float, detail: str = "") -> None:
        if stage is Stage.ANIMATING:
            raise Canceled()

    with pytest.raises(Canceled):
        animators["wan"].animate(portrait, AnimationRequest(seed=3), progress)


def test_clip_colours_follow_the_photo_with_one_transform(animators: dict, portrait: Image.Image) -> None:
    animator = animators["svd"]
    request = AnimationRequest(seed=5)
    photo_mean = np.asarray(portrait.resize((64, 64)), float).reshape(-1, 3).mean(0)
    matched = animator.animate(portrait, request, Recorder()).frames
    animator.color_match = 0.0
    try:
        raw = animator.animate(portrait, request, Recorder()).frames
    finally:
        animator.color_match = 1.0
    err_matched = np.abs(matched.reshape(-1, 3).mean(0) - photo_mean).max()
    err_raw = np.abs(raw.reshape(-1, 3).mean(0) - photo_mean).max()
    assert err_matched < 12 < err_raw  # random weights: only colour matching brings the tone back
    # One affine colour map explains every frame: a per-frame gain would leave residuals of many levels.
    x = np.hstack([raw.reshape(-1, 3).astype(float), np.ones((raw[..., 0].size, 1))])
    y = matched.reshape(-1, 3).astype(float)
    inside = ((y > 0) & (y < 255)).all(1)  # clipped pixels leave the affine map
    coef, *_ = np.linalg.lstsq(x[inside], y[inside], rcond=None)
    assert np.sqrt(((x[inside] @ coef - y[inside]) ** 2).mean()) < 1.0


@pytest.mark.parametrize(
    ("name", "request_", "expected"),
    [
        ("wan", AnimationRequest(frames=8), r"4k\+1 .* \(try 9\)"),
        ("svd", AnimationRequest(size=(100, 64)), r"multiples of 64.*\(try 64x64\)"),
        ("svd", AnimationRequest(steps=500), "between 1 and 200"),
    ],
)
def test_invalid_requests_name_the_expected_value(
    name: str, request_: AnimationRequest, expected: str, animators: dict, portrait: Image.Image
) -> None:
    with pytest.raises(AnimationError, match=expected) as err:
        animators[name].animate(portrait, request_, Recorder())
    assert err.value.code == "invalid_request"


def test_family_detection_and_folder_defaults(folders: dict[str, Path], tmp_path: Path) -> None:
    model, fam = resolve_family(str(folders["svd"]), None)
    assert (fam.name, fam.size, fam.frames, fam.steps) == ("svd", (64, 64), 8, 2)
    assert resolve_family(str(folders["wan"]), None)[1].name == "wan2.1"
    assert resolve_family(None, None) == (
        "stabilityai/stable-video-diffusion-img2vid-xt-1-1",
        resolve_family(None, "svd")[1],
    )
    assert resolve_family(None, "ltx")[0] == "Lightricks/LTX-Video"
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="unsupported pipeline"):
        resolve_family(str(tmp_path), None)
    with pytest.raises(ValueError, match="no model folder"):
        resolve_family(str(tmp_path / "missing"), None)
    with pytest.raises(ValueError, match="cannot tell the family"):
        resolve_family("someone/some-video-model", None)
    (tmp_path / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "WanImageToVideoPipeline",
                "transformer_2": ["diffusers", "WanTransformer3DModel"],
            }
        )
    )
    assert resolve_family(str(tmp_path), None)[1].name == "wan2.2"


def test_portrait_photos_get_portrait_video_by_default() -> None:
    _, fam = resolve_family(None, "svd")
    assert fam.oriented_size((512, 600)) == (576, 1024)
    assert fam.oriented_size((800, 600)) == (1024, 576)


def test_first_block_step_cache_runs_on_a_transformer(
    folders: dict[str, Path], portrait: Image.Image
) -> None:
    animator = DiffusionAnimator(
        model=str(folders["wan"]), speed=SpeedSettings(step_cache="first-block:0.2", warmup=False)
    )
    result = animator.animate(portrait, AnimationRequest(seed=2, steps=4), Recorder())
    assert result.frames.shape == (9, 64, 64, 3)
    with pytest.raises(ValueError, match="transformer denoiser"):  # refused before anything loads
        DiffusionAnimator(
            model=str(folders["svd"]), speed=SpeedSettings(step_cache="first-block:0.2", warmup=False)
        )


def test_svd_motion_text_maps_to_motion_bucket() -> None:
    assert svd_motion_bucket(None) == 127
    assert svd_motion_bucket("a subtle blink") < 127 < svd_motion_bucket("dance and laugh")
    assert svd_motion_bucket("look left and smile") == 127


# ---- motion "auto": the plan models.auto_motion makes for the photo, the one the CPU animator follows ------
def _pipeline_calls(animator: DiffusionAnimator, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments of every call of the animator's pipeline, as the pipeline receives them."""
    calls: list[dict[str, Any]] = []
    cls = type(animator.pipe)
    original = cls.__call__

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__call__", spy)
    return calls


def _planned(description: str, intensity: float) -> PlannedMotion:
    return PlannedMotion(
        name=AUTO, description=description, peaks={}, intensity=intensity, plans=(parse_motion(None, 0),)
    )


@pytest.mark.parametrize("motion", [None, "auto"])
def test_auto_prompt_is_the_plan_in_words(
    motion: str | None,
    animators: dict,
    portrait: Image.Image,
    face_analyzer: FaceAnalyzer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    animator = animators["wan"]
    planned: list[tuple[tuple[Any, ...], PlannedMotion]] = []

    def plan_once(*args: Any, **kwargs: Any) -> PlannedMotion:
        planned.append((args, plan_motion(*args, **kwargs)))
        return planned[-1][1]

    monkeypatch.setattr("models.diffusion.animator.plan_motion", plan_once)
    calls = _pipeline_calls(animator, monkeypatch)
    animator.animate(portrait, AnimationRequest(seed=4, motion=motion), Recorder())
    assert len(planned) == 1 and len(calls) == 1  # planned once per job
    (photo, asked, seed), plan = planned[0]
    assert (photo, asked, seed) == (portrait, motion, 4)  # from the photo, with the job's seed
    prompt = calls[0]["prompt"]
    assert plan.description and prompt.endswith(f"Motion: {plan.description.rstrip('.')}.")
    assert prompt.startswith(animator.family.prompt_prefix) and "auto" not in prompt.lower()
    # The intention the CPU portrait animator gets for this photo: it plans from the faces it finds.
    faces = face_analyzer.analyze(portrait).faces
    assert plan.description == plan_motion(portrait, motion, 4, faces=faces).description


def test_svd_motion_bucket_follows_the_plans_intensity(
    animators: dict, portrait: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    animator = animators["svd"]
    calls = _pipeline_calls(animator, monkeypatch)
    buckets = []
    for intensity in (0.1, 0.5, 0.9):
        monkeypatch.setattr(
            "models.diffusion.animator.plan_motion", lambda *a, i=intensity, **k: _planned("nods", i)
        )
        animator.animate(portrait, AnimationRequest(seed=4), Recorder())
        buckets.append(calls[-1]["motion_bucket_id"])
    assert buckets[0] < buckets[1] == 127 < buckets[2]  # a livelier plan, a higher bucket
    assert svd_motion_bucket("auto", planned=_planned("", 0.0)) == SVD_CALM_BUCKET
    assert svd_motion_bucket(None, planned=_planned("", 1.0)) == SVD_LIVELY_BUCKET


@pytest.mark.parametrize(
    ("motion", "words", "bucket"),
    [
        ("look left and smile", "look left and smile", 127),
        ("nod", "two gentle nods", 70),  # a preset is read by its description's words
        ("a subtle blink", "a subtle blink", 70),
        ("dance and laugh", "dance and laugh", 180),
    ],
)
def test_explicit_motion_keeps_its_words_and_bucket(
    motion: str,
    words: str,
    bucket: int,
    animators: dict,
    portrait: Image.Image,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wan, svd = animators["wan"], animators["svd"]
    wan_calls, svd_calls = _pipeline_calls(wan, monkeypatch), _pipeline_calls(svd, monkeypatch)
    wan.animate(portrait, AnimationRequest(seed=4, motion=motion), Recorder())
    svd.animate(portrait, AnimationRequest(seed=4, motion=motion), Recorder())
    assert wan_calls[-1]["prompt"] == wan.family.prompt_prefix + f"Motion: {words}."
    assert svd_calls[-1]["motion_bucket_id"] == bucket == svd_motion_bucket(motion)


def test_explicit_motion_ignores_its_plan() -> None:
    planned = plan_motion(None, "look left and smile", 4)
    assert planned.name != AUTO and planned.description != "look left and smile"  # so the test tells
    assert motion_prompt("look left and smile", planned) == "Motion: look left and smile."
    assert svd_motion_bucket("look left and smile", planned=planned) == 127


def test_recorded_curves_are_the_prompt_and_the_motion_bucket(
    animators: dict, portrait: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded curves reach a diffusion model as their plan: words for a prompt, intensity for SVD."""
    from models.motion_curves import RecordedMotion, planned_motion

    t = np.arange(96) / 96
    turn = np.sin(np.pi * np.clip(t / 0.45, 0, 1))
    smile = 0.8 * np.clip(np.sin(np.pi * np.clip((t - 0.55) / 0.35, 0, 1)), 0, 1)
    lively = RecordedMotion({"yaw": tuple(-14 * turn), "smile": tuple(smile)})
    calm = RecordedMotion({"yaw": tuple(-3.5 * turn)})
    wan, svd = animators["wan"], animators["svd"]
    wan_calls, svd_calls = _pipeline_calls(wan, monkeypatch), _pipeline_calls(svd, monkeypatch)

    def planning(*args: Any, **kwargs: Any) -> PlannedMotion:
        raise AssertionError("recorded curves are their own plan: the photo is not planned")

    monkeypatch.setattr("models.diffusion.animator.plan_motion", planning)
    wan.animate(portrait, AnimationRequest(seed=4, motion="recorded", curves=lively), Recorder())
    assert wan_calls[-1]["prompt"] == wan.family.prompt_prefix + "Motion: turns toward the left, then smiles."
    buckets = []
    for recorded in (calm, lively):
        svd.animate(portrait, AnimationRequest(seed=4, motion="recorded", curves=recorded), Recorder())
        buckets.append(svd_calls[-1]["motion_bucket_id"])
        assert buckets[-1] == svd_motion_bucket("recorded", planned=planned_motion(recorded))
    assert SVD_CALM_BUCKET < buckets[0] < 127 < buckets[1] <= SVD_LIVELY_BUCKET
