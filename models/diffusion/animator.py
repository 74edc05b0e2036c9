"""DiffusionAnimator: a portrait photo → frames with any supported diffusers image-to-video pipeline.

Stages, as the product names them:
1. analyzing   fit the photo to the model resolution around the face; vision (and text) encoding,
               conditioning latents; ends when the denoiser first runs (a forward pre-hook marks it)
2. animating   the denoising loop; `callback_on_step_end` reports "i/n" and is where a cancel lands
3. decoding    VAE decode and conversion to pixels
4. postprocessing  colour consistency with the photo; frame rate conversion happens in render_clip

Motion "auto" (the default) is planned from the photo's faces by models.auto_motion, the same plan the
CPU portrait animator follows: text-conditioned families get the plan in words, SVD a motion bucket
from its intensity. Recorded curves (models.motion_curves) reach the model the same way, as their plan's
words and intensity. Explicit motion text keeps its own words.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from models.auto_motion import AUTO, PlannedMotion, is_auto, plan_motion
from models.base import AnimationError, AnimationRequest, Frames, ProgressCallback, Stage, no_progress
from models.clip_shape import UHD
from models.diffusion import speed
from models.diffusion.families import AUTO as AUTO_VARIANT
from models.diffusion.families import Family, family_from_model_index, resolve_family
from models.diffusion.guidance import GuidanceInterval, guided_steps
from models.diffusion.loading import load_pipeline, unavailable
from models.diffusion.speed import SpeedSettings
from models.face import detect_face_box
from models.motion import PRESETS, MotionError
from models.motion_curves import RECORDED, planned_motion
from models.postprocess import fit_to_face, match_colors

MIN_DURATION_S, MAX_DURATION_S = 3.0, 5.0

_log = logging.getLogger(__name__)

# SVD has no text input; its motion strength is a "motion bucket" (higher = more motion).
_CALM = re.compile(r"\b(subtle|calm|gentle|still|slight|soft|quiet|breath\w*|blink\w*)\b", re.I)
_LIVELY = re.compile(r"\b(lively|big|dance|dancing|laugh\w*|wave|waving|excited|energetic|turn\w*)\b", re.I)
# A planned motion's intensity 0..1 maps linearly onto these buckets; 0.5 gives SVD's own default, 127.
SVD_CALM_BUCKET, SVD_LIVELY_BUCKET = 64, 190
_PLANNED = (AUTO, RECORDED)  # motions whose plan (words, intensity) is what the model is told
# Added to a text-conditioned model's prompt on the clip guard's calmer second try.
CALMER_PROMPT = " Slow, subtle movement; the face stays the same person throughout."


def describe_motion(motion: str | None) -> str:
    """The motion in words: a preset's description (never its bare name), or the visitor's own text.
    Auto is described by its plan (motion_prompt); without one, by the words it adds, else as gentle."""
    motion = (motion or "").strip()
    if is_auto(motion):
        motion = re.sub(rf"\b{AUTO}\b", "", motion, flags=re.I)
        motion = re.sub(r"^(\W|and\b)+|(\W|\band)+$", "", motion.strip(), flags=re.I)
    motion = motion or "gentle"
    if motion in PRESETS:
        return PRESETS[motion].split(" (")[0]  # the description, without "(the default)"
    return motion.rstrip(".")


def svd_motion_bucket(motion: str | None, default: int = 127, *, planned: PlannedMotion | None = None) -> int:
    """Map the visitor's motion to SVD's motion_bucket_id. Auto or recorded curves with its plan: the plan's
    intensity (0 → SVD_CALM_BUCKET, 1 → SVD_LIVELY_BUCKET); motion text: calm words lower it, lively words
    raise it."""
    if planned is not None and planned.name in _PLANNED:
        intensity = min(1.0, max(0.0, float(planned.intensity)))
        return round(SVD_CALM_BUCKET + (SVD_LIVELY_BUCKET - SVD_CALM_BUCKET) * intensity)
    if not motion or is_auto(motion):
        return default
    text = describe_motion(motion)
    calm, lively = bool(_CALM.search(text)), bool(_LIVELY.search(text))
    if lively and not calm:
        return 180
    if calm and not lively:
        return 70
    return default


def motion_prompt(motion: str | None, planned: PlannedMotion | None = None) -> str:
    """The prompt text: auto or recorded curves with its plan, the plan's description; else the preset's
    description or the visitor's own motion text."""
    if planned is not None and planned.name in _PLANNED:
        return f"Motion: {planned.description.strip().rstrip('.')}."
    return f"Motion: {describe_motion(motion)}."


def plan_for(
    image: Image.Image, motion: str | None, seed: int | None, duration_s: float = 4.0
) -> PlannedMotion | None:
    """The job's motion plan (models.auto_motion), or None for motion text the planner does not understand
    (its words still reach a text-conditioned model). Where face analysis fails (the planner itself copes
    with no mediapipe), the plan is made without faces rather than the job failing."""
    try:
        try:
            return plan_motion(image, motion, seed, duration_s=duration_s)
        except (ImportError, OSError, RuntimeError) as exc:
            _log.warning("no face analysis for the motion plan (%s): planning without faces", exc)
            return plan_motion(None, motion, seed, faces=(), duration_s=duration_s)
    except MotionError:
        return None


def natural_length(frames: int, fps: float) -> tuple[int, float]:
    """(frames to keep, playback fps): the model's own speed, trimmed to at most 5 s rather than sped up;
    a clip shorter than 3 s (a request for few frames) is slowed to 3 s. A family's length is its own:
    a request's duration_s never stretches it (length_note says so instead)."""
    if frames / fps > MAX_DURATION_S + 1e-9:
        return max(2, int(MAX_DURATION_S * fps + 1e-9)), fps
    return frames, min(fps, frames / MIN_DURATION_S)


def length_note(request: AnimationRequest, seconds: float, family: str, size: tuple[int, int]) -> str | None:
    """What the visitor is told when a family's clip is not the length or size asked for: it keeps its
    own, as trained, rather than stretch frames or enlarge them."""
    said = []
    if request.duration_s and abs(request.duration_s - seconds) > 0.05:
        said.append(f"{seconds:.1f} s long, not the {request.duration_s:g} s asked for")
    if request.resolution == UHD and not request.size:
        said.append(f"{size[0]}x{size[1]}, not 4K")
    if not said:
        return None
    return f"This model ({family}) makes clips of its own length and size: this one is {' and '.join(said)}."


class DiffusionAnimator:
    """Image-to-video diffusion on a GPU worker. `setup()` loads once and warms up; `animate()` per job.

    Speed settings come as one SpeedSettings (`create_animator` builds it from VIVIFY_ANIMATOR_OPTIONS);
    combinations the family cannot honour are refused here, before anything is loaded."""

    name = "diffusion"

    def __init__(
        self,
        model: str | None = None,
        family: str | None = None,
        device: str = "auto",
        *,
        revision: str | None = None,
        variant: str | None = AUTO_VARIANT,
        color_match: float = 1.0,
        speed: SpeedSettings | None = None,
    ) -> None:
        self.model, self.family = resolve_family(model, family)
        self.speed = speed if speed is not None else SpeedSettings()
        self.speed.check_for(self.family)
        self.revision, self.variant = revision, variant
        self.guidance_interval = GuidanceInterval(batched=self.family.guidance_batched)
        self.device_name = device
        self.color_match = color_match
        self.time_limit_s = float(self.family.time_limit_s)
        self.pipe: Any = None
        self._first_denoise: list[float] = []  # set by the denoiser pre-hook, cleared per run

    @classmethod
    def from_pipeline(cls, pipe: Any, family: str | None = None, **options: Any) -> DiffusionAnimator:
        """An animator around an already built pipeline (benchmarks with random weights); `setup()` then
        applies the speed settings and warms up instead of loading. The pipeline's dtype is kept.
        `options` are the constructor's keywords (device, color_match, speed)."""
        family = family or family_from_model_index({"_class_name": type(pipe).__name__, **pipe.config})
        animator = cls(model=None, family=family, **options)
        animator.model = f"<in-memory {type(pipe).__name__}>"
        animator._prebuilt = pipe
        return animator

    _prebuilt: Any = None

    # ---- setup -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load the pipeline once (a local folder never touches the hub), apply speed settings, warm up.

        Raises AnimatorUnavailable, naming the model and what to do, when it cannot be loaded."""
        if self.pipe is not None:
            return
        self.device = speed.resolve_device(self.device_name)
        if self._prebuilt is not None:
            pipe, self._prebuilt = self._prebuilt, None
            self.dtype = pipe.dtype
        else:
            self.dtype = speed.resolve_dtype(self.speed.dtype, self.device)
            pipe = load_pipeline(
                self.model, self.family, self.dtype, revision=self.revision, variant=self.variant
            )
        if type(pipe).__name__ != self.family.pipeline_class:
            raise ValueError(f"{self.model} loads as {type(pipe).__name__}, not {self.family.pipeline_class}")
        pipe.set_progress_bar_config(disable=True)
        modules = speed.denoisers(pipe)
        for m in modules:
            m.register_forward_pre_hook(self._on_denoiser_call)
        self.guidance_interval.attach(modules)
        try:  # the GPU fills here, not while loading (from_pretrained reads into CPU memory)
            speed.apply(pipe, self.speed, self.device, self.family)
            self.pipe = pipe
            if self.speed.warms_up(self.device):
                self._warm_up()
        except torch.OutOfMemoryError as e:
            self.pipe = None
            raise unavailable(self.model, e, family=self.family) from e

    def _warm_up(self) -> None:
        """Two steps at each shape the worker serves, so kernels are chosen (cuDNN autotuning) and graphs
        compiled before the first job: the family's size in both orientations a photo can get, its frame
        count, and with a guidance interval both batch sizes (one guided, one conditional-only step)."""
        w, h = self.family.size
        shapes = {(w, h), (h, w)} if self.family.orientable else {(w, h)}
        gradient = np.linspace(0, 255, w * h * 3, dtype=np.float32).reshape(h, w, 3).astype(np.uint8)
        steps = min(2, self.family.steps)
        guided = 1 if self.speed.guidance_until < 1 else None
        for size in sorted(shapes):
            photo = Image.fromarray(gradient).resize(size)
            self._denoise(photo, size, self.family.frames, steps, 0, None, no_progress, guided=guided)
        # Loads the face detector (about a second) here, not in the first job; the runs above planned the
        # default (auto) motion, so the planner's face analysis is loaded too.
        detect_face_box(photo)

    def _on_denoiser_call(self, module: torch.nn.Module, args: Any) -> None:
        if not self._first_denoise:
            self._sync()
            self._first_denoise.append(time.perf_counter())
            if self._on_first_denoise is not None:
                self._on_first_denoise()

    _on_first_denoise: Any = None

    def _sync(self) -> None:
        if self.pipe is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ---- one job -----------------------------------------------------------------------------------------
    def plan(
        self, photo_size: tuple[int, int], request: AnimationRequest
    ) -> tuple[tuple[int, int], int, int]:
        """(size, frames, steps) for a request; raises ValueError naming the expected value if invalid."""
        fam = self.family
        size: tuple[int, int] = request.size or fam.oriented_size(photo_size)
        frames = request.frames or fam.frames
        steps = request.steps or fam.steps
        fam.check(size, frames, steps)
        return size, frames, steps

    def animate(
        self, photo: Image.Image, request: AnimationRequest, progress: ProgressCallback = no_progress
    ) -> Frames:
        """Animate an upright RGB photo. Canceled (raised by `progress`) propagates within one step."""
        try:
            size, frames, steps = self.plan(photo.size, request)  # before any GPU work
        except ValueError as e:
            raise AnimationError("invalid_request", str(e)) from e
        self.setup()
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        t0 = time.perf_counter()
        progress(Stage.ANALYZING, 0.0, "planning the motion")
        keep, fps = natural_length(frames, self.family.fps)
        # The request's seed, as the portrait animator plans with it: one photo, one motion, one plan.
        # Recorded curves are their own plan: words and a strength written from them.
        planned = (
            planned_motion(request.curves)
            if request.curves is not None
            else plan_for(photo, request.motion, request.seed, duration_s=keep / fps)
        )
        progress(Stage.ANALYZING, 0.0, "fitting the photo around the face")
        fit = fit_to_face(photo, size)
        video, marks = self._denoise(
            fit.image,
            size,
            frames,
            steps,
            seed,
            request.motion,
            progress,
            planned=planned,
            calmer=request.calmer,
        )
        t_post = time.perf_counter()
        progress(Stage.DECODING, 1.0, "")
        progress(Stage.POSTPROCESSING, 0.0, "matching colours to the photo")
        keep, fps = natural_length(len(video), self.family.fps)
        video = video[:keep]
        if self.color_match > 0:
            video = match_colors(video, fit.image, strength=self.color_match)
        progress(Stage.POSTPROCESSING, 1.0, "")
        t_end = time.perf_counter()
        stage_seconds = {
            Stage.ANALYZING.value: marks["denoise_start"] - t0,
            Stage.ANIMATING.value: marks["denoise_end"] - marks["denoise_start"],
            Stage.DECODING.value: t_post - marks["denoise_end"],
            Stage.POSTPROCESSING.value: t_end - t_post,
        }
        note = length_note(request, keep / fps, self.family.name, size)
        return Frames(frames=video, fps=fps, stage_seconds=stage_seconds, note=note)

    def call_kwargs(
        self,
        image: Image.Image,
        size: tuple[int, int],
        frames: int,
        steps: int,
        seed: int,
        motion: str | None,
        planned: PlannedMotion | None = None,
        calmer: bool = False,
    ) -> dict[str, Any]:
        """The pipeline's keyword arguments for one run, built from the family table. Auto motion without
        a `planned` motion is planned here, from `image`. `calmer` (the clip guard's second try) halves
        SVD's motion bucket and asks text-conditioned models for slow, subtle motion."""
        fam: Family = self.family
        if planned is None and is_auto(motion):
            planned = plan_for(image, motion, seed)
        kwargs: dict[str, Any] = {
            "image": image,
            "width": size[0],
            "height": size[1],
            "num_frames": frames,
            "num_inference_steps": steps,
            "generator": torch.Generator("cpu").manual_seed(seed),  # same noise on any device
            "output_type": "np",
            fam.guidance_arg: self.speed.guidance if self.speed.guidance is not None else fam.guidance,
            **fam.call_kwargs,
        }
        if fam.fps_arg:
            kwargs[fam.fps_arg] = round(fam.fps)
        if fam.text_conditioned:
            kwargs["prompt"] = fam.prompt_prefix + motion_prompt(motion, planned)
            if calmer:
                kwargs["prompt"] += CALMER_PROMPT
            if fam.negative_prompt:
                kwargs["negative_prompt"] = fam.negative_prompt
        if fam.decode_chunks:
            bucket = svd_motion_bucket(motion, planned=planned)
            kwargs.setdefault("motion_bucket_id", max(1, bucket // 2) if calmer else bucket)
            kwargs["decode_chunk_size"] = speed.decode_chunk(self.speed, frames, size, self.device)
        return kwargs

    def _denoise(
        self,
        image: Image.Image,
        size: tuple[int, int],
        frames: int,
        steps: int,
        seed: int,
        motion: str | None,
        progress: ProgressCallback,
        guided: int | None = None,
        planned: PlannedMotion | None = None,
        calmer: bool = False,
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Run the pipeline; uint8 (T, H, W, 3) frames and the stage boundary times.

        `guided`: how many steps use classifier-free guidance (default: from `guidance_until`);
        `planned`: the job's motion plan (see call_kwargs)."""
        marks: dict[str, float] = {}
        total = steps

        def first_denoise() -> None:
            progress(Stage.ANALYZING, 1.0, "")
            progress(Stage.ANIMATING, 0.0, f"0/{total}")

        def on_step_end(pipe: Any, i: int, t: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
            self._sync()  # progress that is real, and a cancel that lands within this step
            n = getattr(pipe, "num_timesteps", None) or total
            self.guidance_interval.step_ended(pipe, i)
            progress(Stage.ANIMATING, (i + 1) / n, f"{i + 1}/{n}")
            if i + 1 >= n:
                marks["denoise_end"] = time.perf_counter()
                progress(Stage.DECODING, 0.0, "decoding frames")
            return {}

        self._first_denoise.clear()
        self._on_first_denoise = first_denoise
        try:
            kwargs = self.call_kwargs(image, size, frames, steps, seed, motion, planned, calmer)
            if self.speed.guidance_until < 1 and guided is None:
                guided = guided_steps(self.speed.guidance_until, steps)
            # no interval where the pipeline runs no unconditional pass at all
            self.guidance_interval.start(guided if kwargs[self.family.guidance_arg] > 1 else None)
            with torch.inference_mode():
                out = self.pipe(**kwargs, callback_on_step_end=on_step_end)
            self._sync()
        finally:
            # Whatever ended the run (finished, canceled, an error, out of memory): the next job of any
            # shape starts from clean hook and cache state.
            self._on_first_denoise = None
            self.guidance_interval.stop()
            speed.reset_caches(self.pipe)
        marks["denoise_start"] = self._first_denoise[0]
        marks.setdefault("denoise_end", marks["denoise_start"])
        video = np.asarray(out.frames[0], dtype=np.float32)
        if video.ndim != 4 or video.shape[-1] != 3:
            raise RuntimeError(f"{type(self.pipe).__name__} returned frames of shape {video.shape}")
        return (np.clip(video, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), marks
