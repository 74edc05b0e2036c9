"""DiffusionAnimator: a portrait photo → frames with any supported diffusers image-to-video pipeline.

Stages, as the product names them:
1. analyzing   fit the photo to the model resolution around the face; vision (and text) encoding,
               conditioning latents; ends when the denoiser first runs (a forward pre-hook marks it)
2. animating   the denoising loop; `callback_on_step_end` reports "i/n" and is where a cancel lands
3. decoding    VAE decode (chunked) and conversion to pixels
4. postprocessing  colour consistency with the photo; frame rate conversion happens in render_clip
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from models.base import AnimationError, AnimationRequest, Frames, ProgressCallback, Stage, no_progress
from models.diffusion import speed
from models.diffusion.families import Family, family_from_model_index, resolve_family
from models.diffusion.guidance import GuidanceInterval, guided_steps
from models.motion import PRESETS
from models.postprocess import fit_to_face, match_colors

MIN_DURATION_S, MAX_DURATION_S = 3.0, 5.0

# SVD has no text input; its motion strength is a "motion bucket" (higher = more motion).
_CALM = re.compile(r"\b(subtle|calm|gentle|still|slight|soft|quiet|breath\w*|blink\w*)\b", re.I)
_LIVELY = re.compile(r"\b(lively|big|dance|dancing|laugh\w*|wave|waving|excited|energetic|turn\w*)\b", re.I)


def svd_motion_bucket(motion: str | None, default: int = 127) -> int:
    """Map the visitor's motion text to SVD's motion_bucket_id: calm words lower it, lively words raise it."""
    if not motion:
        return default
    calm, lively = bool(_CALM.search(motion)), bool(_LIVELY.search(motion))
    if lively and not calm:
        return 180
    if calm and not lively:
        return 70
    return default


def motion_prompt(motion: str | None) -> str:
    """The prompt text for a motion preset name or the visitor's own motion text."""
    motion = (motion or "gentle").strip()
    if motion in PRESETS:
        motion = PRESETS[motion].split(" (")[0]  # the description, without "(the default)"
    return f"Motion: {motion.rstrip('.')}."


class DiffusionAnimator:
    """Image-to-video diffusion on a GPU worker. `setup()` loads once and warms up; `animate()` per job."""

    name = "diffusion"

    def __init__(
        self,
        model: str | None = None,
        family: str | None = None,
        device: str = "auto",
        *,
        dtype: str = "auto",
        attention_backend: str | None = None,
        compile: str = "auto",
        compile_mode: str | None = None,
        channels_last: bool = True,
        cudnn_benchmark: bool = True,
        decode_chunk_size: int | None = 8,
        vae_tiling: bool = False,
        cpu_offload: str = "off",
        step_cache: str | None = None,
        quantize: str | None = None,
        guidance: float | None = None,
        guidance_until: float = 1.0,
        warmup: bool = True,
        color_match: float = 1.0,
    ) -> None:
        self.model, self.family = resolve_family(model, family)
        self.speed = speed.SpeedSettings(
            dtype=dtype,
            attention_backend=attention_backend,
            compile=compile,
            compile_mode=compile_mode,
            channels_last=channels_last,
            cudnn_benchmark=cudnn_benchmark,
            decode_chunk_size=decode_chunk_size,
            vae_tiling=vae_tiling,
            cpu_offload=cpu_offload,
            step_cache=step_cache,
            quantize=quantize,
            guidance=guidance,
            guidance_until=guidance_until,
            warmup=warmup,
        )
        if step_cache and guidance_until < 1 and self.family.guidance_batched:
            # The cache keeps the previous step's residual; the batch halving at the cut-off would mix
            # batch sizes in it.
            raise ValueError(f"{self.family.name}: step_cache and guidance_until < 1 cannot be combined")
        self.guidance_interval = GuidanceInterval(batched=self.family.guidance_batched)
        self.device_name = device
        self.color_match = color_match
        self.pipe: Any = None
        self._first_denoise: list[float] = []  # set by the denoiser pre-hook, cleared per run

    @classmethod
    def from_pipeline(cls, pipe: Any, family: str | None = None, **options: Any) -> DiffusionAnimator:
        """An animator around an already built pipeline (benchmarks with random weights); `setup()` then
        applies the speed settings and warms up instead of loading. The pipeline's dtype is kept."""
        family = family or family_from_model_index({"_class_name": type(pipe).__name__, **pipe.config})
        animator = cls(model=None, family=family, **options)
        animator.model = f"<in-memory {type(pipe).__name__}>"
        animator._prebuilt = pipe
        return animator

    _prebuilt: Any = None

    # ---- setup -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load the pipeline once (a local folder never touches the hub), apply speed settings, warm up."""
        if self.pipe is not None:
            return
        from diffusers import DiffusionPipeline

        self.device = speed.resolve_device(self.device_name)
        if self._prebuilt is not None:
            pipe, self._prebuilt = self._prebuilt, None
            self.dtype = pipe.dtype
        else:
            self.dtype = speed.resolve_dtype(self.speed.dtype, self.device)
            local = Path(self.model).is_dir()
            pipe = DiffusionPipeline.from_pretrained(
                self.model, local_files_only=local, **speed.dtype_kwarg(self.dtype)
            )
        if type(pipe).__name__ != self.family.pipeline_class:
            raise ValueError(f"{self.model} loads as {type(pipe).__name__}, not {self.family.pipeline_class}")
        pipe.set_progress_bar_config(disable=True)
        modules = speed.denoisers(pipe)
        for m in modules:
            m.register_forward_pre_hook(self._on_denoiser_call)
        self.guidance_interval.attach(modules)
        speed.apply(pipe, self.speed, self.device)
        self.pipe = pipe
        if self.speed.warmup:
            self._warm_up()

    def _warm_up(self) -> None:
        """One short run at production shapes so kernels are chosen (and compiled) before the first job."""
        w, h = self.family.size
        # A compiled denoiser specialises on shapes: warm both orientations a photo can get, and with a
        # guidance interval both batch sizes (one guided step, one conditional-only step).
        compiled = self.speed.compile != "off" and self.device.type == "cuda"
        shapes = {(w, h), (h, w)} if compiled and self.family.orientable else {(w, h)}
        gradient = np.linspace(0, 255, w * h * 3, dtype=np.float32).reshape(h, w, 3).astype(np.uint8)
        steps = min(2, self.family.steps)
        guided = 1 if self.speed.guidance_until < 1 else None
        for size in sorted(shapes):
            photo = Image.fromarray(gradient).resize(size)
            self._denoise(photo, size, self.family.frames, steps, 0, None, no_progress, guided=guided)

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
        size = tuple(request.size) if request.size else fam.oriented_size(photo_size)
        frames = request.frames or fam.frames
        steps = request.steps or fam.steps
        fam.check(size, frames, steps)  # type: ignore[arg-type]
        return size, frames, steps  # type: ignore[return-value]

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
        progress(Stage.ANALYZING, 0.0, "fitting the photo around the face")
        fit = fit_to_face(photo, size)
        video, marks = self._denoise(fit.image, size, frames, steps, seed, request.motion, progress)
        t_post = time.perf_counter()
        progress(Stage.DECODING, 1.0, "")
        progress(Stage.POSTPROCESSING, 0.0, "matching colours to the photo")
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
        duration = request.duration_s or min(max(frames / self.family.fps, MIN_DURATION_S), MAX_DURATION_S)
        return Frames(frames=video, fps=frames / duration, stage_seconds=stage_seconds)

    def call_kwargs(
        self,
        image: Image.Image,
        size: tuple[int, int],
        frames: int,
        steps: int,
        seed: int,
        motion: str | None,
    ) -> dict[str, Any]:
        """The pipeline's keyword arguments for one run, built from the family table."""
        fam: Family = self.family
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
            kwargs["prompt"] = fam.prompt_prefix + (
                motion or "The person blinks, breathes and smiles softly."
            )
            if fam.negative_prompt:
                kwargs["negative_prompt"] = fam.negative_prompt
        if fam.name == "svd":
            kwargs.setdefault("motion_bucket_id", svd_motion_bucket(motion))
            kwargs["decode_chunk_size"] = self.speed.decode_chunk_size or frames
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
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Run the pipeline; uint8 (T, H, W, 3) frames and the stage boundary times.

        `guided`: how many steps use classifier-free guidance (default: from `guidance_until`)."""
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
            kwargs = self.call_kwargs(image, size, frames, steps, seed, motion)
            if self.speed.guidance_until < 1 and guided is None:
                guided = guided_steps(self.speed.guidance_until, steps)
            # no interval where the pipeline runs no unconditional pass at all
            self.guidance_interval.start(guided if kwargs[self.family.guidance_arg] > 1 else None)
            with torch.inference_mode():
                out = self.pipe(**kwargs, callback_on_step_end=on_step_end)
            self._sync()
        finally:
            self._on_first_denoise = None
            self.guidance_interval.stop()
        marks["denoise_start"] = self._first_denoise[0]
        marks.setdefault("denoise_end", marks["denoise_start"])
        video = np.asarray(out.frames[0], dtype=np.float32)
        if video.ndim != 4 or video.shape[-1] != 3:
            raise RuntimeError(f"{type(self.pipe).__name__} returned frames of shape {video.shape}")
        return (np.clip(video, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), marks
