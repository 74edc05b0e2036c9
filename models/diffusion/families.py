"""The supported image-to-video model families and their defaults: one table, no per-family code paths.

A family names the diffusers pipeline class, the default hub id, and what a production clip uses:
resolution, frame count, native frame rate, denoising steps and guidance. A model folder may carry a
`vivify.json` that overrides any of these (a fine-tune, a distilled few-step variant, a tiny test model).
`PRODUCTION_SHAPES` and `SCHEDULERS` describe the real architectures, for the pipelines built here
without a download (the benchmark's real-size models, the tests' production-shape rehearsals).
This module needs neither torch nor diffusers.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FOLDER_DEFAULTS_FILE = "vivify.json"
AUTO = "auto"  # "decide from the family and the device": a value of several loading and speed options

# SVD-XT 1.1's published scheduler_config.json (EulerDiscreteScheduler), for pipelines built here
# without a download: the tiny test models and the real-size benchmark.
SVD_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "use_karras_sigmas": True,
}
# Each built family's scheduler: its diffusers class and the default repo's config.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "svd": ("EulerDiscreteScheduler", SVD_SCHEDULER_CONFIG),
    "wan2.1": (
        "UniPCMultistepScheduler",
        {
            "prediction_type": "flow_prediction",
            "use_flow_sigmas": True,
            "num_train_timesteps": 1000,
            "flow_shift": 3.0,
        },
    ),
    "ltx": (
        "FlowMatchEulerDiscreteScheduler",
        {
            "use_dynamic_shifting": True,
            "base_shift": 0.95,
            "max_shift": 2.05,
            "base_image_seq_len": 1024,
            "max_image_seq_len": 4096,
        },
    ),
    "cogvideox": (
        "CogVideoXDPMScheduler",
        {
            "beta_schedule": "scaled_linear",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "prediction_type": "v_prediction",
            "rescale_betas_zero_snr": True,
            "snr_shift_scale": 1.0,
            "timestep_spacing": "trailing",
        },
    ),
}


@dataclass(frozen=True)
class Family:
    name: str
    pipeline_class: str  # diffusers class name, as in model_index.json `_class_name`
    hub_id: str  # default weights
    size: tuple[int, int]  # (width, height), landscape; portrait photos get it transposed
    frames: int
    fps: float  # native frame rate the model was trained for
    steps: int
    guidance: float  # 1.0 disables classifier-free guidance (no second denoiser pass)
    guidance_arg: str = "guidance_scale"  # the pipeline's keyword for `guidance`
    guidance_batched: bool = True  # [uncond; cond] in one denoiser call (False: two calls, as Wan does)
    fps_arg: str | None = None  # the pipeline's keyword for the frame-rate conditioning, if any
    text_conditioned: bool = True  # the visitor's motion text becomes the prompt
    size_multiple: int = 16  # width and height must be multiples of this
    frames_rule: tuple[int, int] = (1, 0)  # frames ≡ rule[1] (mod rule[0])
    prompt_prefix: str = "A portrait photo of a person coming to life, natural subtle motion. "
    negative_prompt: str | None = None
    orientable: bool = True  # False where the model takes one size only (learned positional embeddings)
    call_kwargs: dict[str, Any] = field(default_factory=dict)  # further fixed pipeline arguments
    # Loading: the weight-file variant the default hub repo has (fp16 halves the download), and the
    # components the family's docs load in float32 whatever the pipeline's dtype.
    variant: str | None = None
    full_precision: tuple[str, ...] = ()
    # What the speed settings can act on: the denoiser's kind ("unet" | "transformer"), whether the VAE
    # tiles, whether the pipeline decodes in frame chunks (SVD's decode_chunk_size), and whether the text
    # encoder should leave the GPU between jobs to make room (offload_text_encoder="auto").
    denoiser: str = "transformer"
    attention_dispatch: bool = True  # its attention runs through diffusers' dispatcher (attention_backend)
    vae_tiling: bool = True
    decode_chunks: bool = False
    offload_text_encoder: bool = False
    # Seconds one clip may take before the job is failed `timeout`: a generous bound from the family's work
    # per clip (FLOPs at the default size, frames and steps) on a data-centre GPU, so a stuck job ends.
    time_limit_s: int = 300

    def oriented_size(self, photo_size: tuple[int, int]) -> tuple[int, int]:
        """The default size, turned to portrait when the photo is portrait."""
        w, h = self.size
        if not self.orientable:
            return self.size
        return (min(w, h), max(w, h)) if photo_size[1] > photo_size[0] else (max(w, h), min(w, h))

    def check(self, size: tuple[int, int], frames: int, steps: int) -> None:
        """Raise ValueError naming the expected value for inputs this family cannot take."""
        m = self.size_multiple
        if size[0] % m or size[1] % m or min(size) < m:
            ok = (max(m, size[0] // m * m), max(m, size[1] // m * m))
            raise ValueError(
                f"{self.name}: width and height must be multiples of {m}, got {size[0]}x{size[1]} "
                f"(try {ok[0]}x{ok[1]})"
            )
        k, r = self.frames_rule
        if frames < 2 or frames % k != r % k:
            ok_frames = max(k + r, round((frames - r) / k) * k + r)
            raise ValueError(
                f"{self.name}: frames must be {k}k+{r} and at least 2, got {frames} (try {ok_frames})"
            )
        if not 1 <= steps <= 200:
            raise ValueError(f"steps must be between 1 and 200, got {steps}")


_WAN_NEGATIVE = (
    "static, frozen, blurry, low quality, distorted face, deformed, extra fingers, jpeg artifacts, "
    "subtitles, watermark, text"
)

# Families that share all but a few settings are written once and varied below.
_WAN21 = Family(
    "wan2.1",
    "WanImageToVideoPipeline",
    "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    size=(832, 480),
    frames=81,
    fps=16,
    steps=40,
    guidance=5.0,
    guidance_batched=False,
    frames_rule=(4, 1),
    negative_prompt=_WAN_NEGATIVE,
    full_precision=("vae", "image_encoder"),  # the Wan I2V docs: fp32 for decode and image-encode quality
    # ~133 PFLOP per clip (14 B DiT, 21×60×104 latents, 40 steps, guided): over 5 min even at 50 % MFU
    time_limit_s=1800,
)
_LTX = Family(
    "ltx",
    "LTXImageToVideoPipeline",
    "Lightricks/LTX-Video",
    size=(768, 512),
    frames=97,
    fps=24,
    steps=40,
    guidance=3.0,
    fps_arg="frame_rate",
    size_multiple=32,
    frames_rule=(8, 1),
    negative_prompt="worst quality, inconsistent motion, blurry, jittery, distorted",
    call_kwargs={"decode_timestep": 0.05, "decode_noise_scale": 0.025},
)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "svd",
            "StableVideoDiffusionPipeline",
            "stabilityai/stable-video-diffusion-img2vid-xt-1-1",
            size=(1024, 576),
            frames=25,
            fps=7,
            steps=25,
            guidance=3.0,
            guidance_arg="max_guidance_scale",
            fps_arg="fps",
            text_conditioned=False,
            size_multiple=64,
            call_kwargs={"min_guidance_scale": 1.0, "noise_aug_strength": 0.02},
            variant="fp16",
            denoiser="unet",
            attention_dispatch=False,
            vae_tiling=False,
            decode_chunks=True,
        ),
        _WAN21,
        # A14B: two experts (high noise, low noise), no CLIP image encoder; otherwise Wan 2.1's settings.
        # The experts alone are 2 × 28.6 GB in bf16: UMT5-XXL (11 GB) waits in CPU memory between prompts.
        dataclasses.replace(
            _WAN21,
            name="wan2.2",
            hub_id="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
            guidance=3.5,
            full_precision=("vae",),
            offload_text_encoder=True,
        ),
        _LTX,
        # LTX-Video 0.9.7's condition pipeline: LTX's settings, fewer steps
        dataclasses.replace(
            _LTX,
            name="ltx-condition",
            pipeline_class="LTXConditionPipeline",
            hub_id="Lightricks/LTX-Video-0.9.7-dev",
            steps=30,
        ),
        Family(
            "cogvideox",
            "CogVideoXImageToVideoPipeline",
            "THUDM/CogVideoX-5b-I2V",
            size=(720, 480),
            frames=49,
            fps=8,
            steps=50,
            guidance=6.0,
            frames_rule=(4, 1),
            orientable=False,
            attention_dispatch=False,  # CogVideoX's processor calls PyTorch SDPA itself
            call_kwargs={"use_dynamic_cfg": True},
            time_limit_s=900,  # 5 B DiT over 13×60×90 latents, 50 guided steps: ~35 PFLOP per clip
        ),
    ]
}


@dataclass(frozen=True)
class Shape:
    """What a family's real architecture fixes about tensor shapes, whatever its widths: the VAE's
    compression and latent channels, the denoiser's input channels and patches, the conditioning lengths.
    With the Family's size and frames these give every latent grid and token count of a clip."""

    latent_channels: int
    denoiser_in_channels: int  # the noise latents and what the pipeline concatenates to them
    vae_scale: int  # pixels per latent, each side
    vae_scale_t: int = 1  # frames per latent frame after the first; 1: the VAE keeps every frame
    patch: tuple[int, int, int] = (1, 1, 1)  # the denoiser's (frames, height, width) patch over latents
    text_tokens: int = 0  # the prompt length the pipeline pads to by default
    image_size: int | None = None  # the CLIP image encoder's input side, where there is one
    image_patch: int = 14
    rope_max_seq_len: int | None = None  # the length of the denoiser's RoPE table, where it is configured

    def latent_grid(self, size: tuple[int, int], frames: int) -> tuple[int, int, int]:
        """(frames, height, width) of the latents of a clip of `size` (width, height) and `frames`."""
        return (frames - 1) // self.vae_scale_t + 1, size[1] // self.vae_scale, size[0] // self.vae_scale

    @property
    def image_tokens(self) -> int:
        """The image encoder's tokens: one per patch and a class token (none without an encoder)."""
        if self.image_size is None:
            return 0
        side = self.image_size // self.image_patch
        return side * side + 1


# The real shapes of the architectures built without a download (bench/gpu_i2v.py at full width,
# tests/fixtures/rehearsal_pipelines.py narrow). CLIP ViT-H/14 at 224 px: 257 image tokens.
PRODUCTION_SHAPES: dict[str, Shape] = {
    # 4 noise + 4 image latents on channels
    "svd": Shape(latent_channels=4, denoiser_in_channels=8, vae_scale=8, image_size=224),
    # 16 noise latents + 4 mask channels + 16 image latents
    "wan2.1": Shape(
        latent_channels=16,
        denoiser_in_channels=36,
        vae_scale=8,
        vae_scale_t=4,
        patch=(1, 2, 2),
        text_tokens=512,
        image_size=224,
        rope_max_seq_len=1024,
    ),
    # 4×4 pixel patches and three 2× stages; the image is a conditioning latent frame, not channels
    "ltx": Shape(latent_channels=128, denoiser_in_channels=128, vae_scale=32, vae_scale_t=8, text_tokens=128),
    # 16 noise + 16 image latents
    "cogvideox": Shape(
        latent_channels=16,
        denoiser_in_channels=32,
        vae_scale=8,
        vae_scale_t=4,
        patch=(1, 2, 2),
        text_tokens=226,
    ),
}

DEFAULT_FAMILY = "svd"
_BY_CLASS = {
    "StableVideoDiffusionPipeline": "svd",
    "LTXImageToVideoPipeline": "ltx",
    # Lightricks/LTX-Video's model_index.json names the text-to-video class; the components are the same
    # and the loader builds the family's own class (models/diffusion/loading.py).
    "LTXPipeline": "ltx",
    "LTXConditionPipeline": "ltx-condition",
    "CogVideoXImageToVideoPipeline": "cogvideox",
}


def family_from_model_index(index: dict[str, Any]) -> str:
    """The family of a pipeline folder's model_index.json (Wan 2.1 and 2.2 share a class)."""
    cls = index.get("_class_name", "")
    if cls == "WanImageToVideoPipeline":
        has_second_expert = (index.get("transformer_2") or [None, None])[0] is not None
        return "wan2.2" if has_second_expert or index.get("boundary_ratio") else "wan2.1"
    if cls in _BY_CLASS:
        return _BY_CLASS[cls]
    known = ", ".join(sorted({f.pipeline_class for f in FAMILIES.values()}))
    raise ValueError(f"unsupported pipeline {cls or '(no _class_name)'}; expected one of {known}")


def resolve_family(model: str | None, family: str | None) -> tuple[str, Family]:
    """(model id or folder, family with folder overrides applied) for the animator's settings."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    folder = Path(model).expanduser() if model else None
    if model and folder is not None and not folder.is_dir() and model.startswith(("/", ".", "~")):
        raise ValueError(f"no model folder at {model}")
    if folder is not None and folder.is_dir():
        index_file = folder / "model_index.json"
        if not index_file.exists():
            raise ValueError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
        fam = FAMILIES[family or family_from_model_index(json.loads(index_file.read_text()))]
        return str(folder), apply_folder_defaults(fam, folder)
    if family is None:
        by_hub = {f.hub_id: f.name for f in FAMILIES.values()}
        family = by_hub.get(model or "", DEFAULT_FAMILY if model is None else None)
        if family is None:
            raise ValueError(f"cannot tell the family of {model!r}: pass family= ({', '.join(FAMILIES)})")
    fam = FAMILIES[family]
    return model or fam.hub_id, fam


def apply_folder_defaults(fam: Family, folder: Path) -> Family:
    """Overrides from `<folder>/vivify.json`: any Family field but name, class and hub id."""
    path = folder / FOLDER_DEFAULTS_FILE
    if not path.exists():
        return fam
    data = json.loads(path.read_text())
    allowed = {f.name for f in dataclasses.fields(Family)} - {"name", "pipeline_class", "hub_id"}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    if "size" in data:
        data["size"] = tuple(data["size"])
    for key in ("frames_rule", "full_precision"):
        if key in data:
            data[key] = tuple(data[key])
    if "call_kwargs" in data:
        data["call_kwargs"] = {**fam.call_kwargs, **data["call_kwargs"]}
    return dataclasses.replace(fam, **data)
