"""Speed and memory settings of the diffusion animator: each is a setting; `apply` puts them on a pipeline.

What each does and its status (see bench/gpu_i2v.py for the measurements):
- dtype: bf16 on CUDA (fp16 where bf16 is missing), fp32 on CPU. Implemented.
- attention_backend: None keeps PyTorch SDPA (diffusers' default processor, flash/mem-efficient kernels
  on CUDA); a name ("flash", "_native_cudnn", "sage", ...) goes to `set_attention_backend`. Implemented.
- compile: torch.compile of the denoiser: "blocks" compiles the repeated transformer block once (diffusers'
  regional compilation: a much shorter compile), "full" compiles the denoiser's forward; "auto" picks blocks
  where the model declares repeated blocks, else full, and only on CUDA. Graphs are static per shape
  (`dynamic=False`): the warm-up compiles both orientations (and, with guidance_until, both batch sizes)
  so that no job pays for a compile. Implemented; speed-up unmeasured.
- channels_last: NHWC convolutions for UNet denoisers (tensor cores like it). Implemented.
- cudnn_benchmark: let cuDNN time its convolution algorithms once per shape and keep the fastest (the UNet
  and the VAE decoder are convolution-heavy; shapes are fixed per orientation and the warm-up meets them).
  CUDA only. Implemented; speed-up unmeasured.
- decode_chunk_size: frames per VAE decode call (SVD), bounding decode memory. vae_tiling: spatial (and,
  for Wan/LTX/CogVideoX, temporal) tiles in the VAE. Implemented.
- cpu_offload: "model" moves each component to the GPU only while it runs (small GPUs); "sequential" goes
  layer by layer (slowest, least memory). Implemented (diffusers' hooks).
- step_cache: "first-block:<threshold>" reuses the residual of all blocks but the first when the first
  block's output changed by less than the threshold (First-Block Cache / TeaCache family); transformer
  denoisers only (Wan, LTX, CogVideoX). Implemented; quality/speed effect not yet measured on a GPU.
- guidance: 1.0 turns classifier-free guidance off, halving denoiser work; the family table sets it per
  model, and distilled few-step variants set it to 1.0 in their folder's vivify.json. Implemented.
- guidance_until: the fraction of the denoising steps, from the first, that use classifier-free guidance;
  later steps run the conditional pass only (models/diffusion/guidance.py). 0.6 at 25 steps is 20 % less
  denoiser work. Default 1.0 (stock). Implemented; its effect on real weights is not yet measured.
- quantize: torchao weight quantisation of the denoiser's Linear layers (models/diffusion/quantize.py):
  "fp8-dynamic" runs them as float8 matmuls on CUDA >= 8.9 (H100: up to twice the bf16 rate); "fp8-weight"
  and "int8-weight" halve their weight memory on any device. Implemented and tested on a CPU (int8, fp8
  weight-only); fp8-dynamic's speed and quality effect is not yet measured on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from models.diffusion.quantize import check_scheme, quantize_denoiser

COMPILE_MODES = ("auto", "off", "blocks", "full")
OFFLOAD_MODES = ("off", "model", "sequential")
DTYPES = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class SpeedSettings:
    dtype: str = "auto"
    attention_backend: str | None = None
    compile: str = "auto"
    compile_mode: str | None = None  # torch.compile mode, e.g. "max-autotune-no-cudagraphs"
    channels_last: bool = True
    cudnn_benchmark: bool = True
    decode_chunk_size: int | None = 8
    vae_tiling: bool = False
    cpu_offload: str = "off"
    step_cache: str | None = None
    quantize: str | None = None
    guidance: float | None = None
    guidance_until: float = 1.0
    warmup: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if self.cpu_offload not in OFFLOAD_MODES:
            raise ValueError(
                f"cpu_offload must be one of {', '.join(OFFLOAD_MODES)}, got {self.cpu_offload!r}"
            )
        if self.decode_chunk_size is not None and self.decode_chunk_size < 1:
            raise ValueError(f"decode_chunk_size must be at least 1, got {self.decode_chunk_size}")
        if self.step_cache is not None:
            parse_step_cache(self.step_cache)
        if self.quantize is not None:
            check_scheme(self.quantize)
            if self.cpu_offload == "sequential":
                # sequential offload swaps weights for placeholders layer by layer: not with quantised ones
                raise ValueError("quantize does not work with cpu_offload='sequential'; use 'model' or 'off'")
            if self.quantize == "fp8-dynamic" and self.dtype in ("fp16", "fp32"):
                raise ValueError("quantize='fp8-dynamic' needs dtype bf16 (or auto on a CUDA GPU)")
        if not 0 < self.guidance_until <= 1:
            raise ValueError(f"guidance_until must be in (0, 1], got {self.guidance_until}")


def parse_step_cache(spec: str) -> Any:
    """ "first-block:0.05" → diffusers' FirstBlockCacheConfig(threshold=0.05)."""
    kind, _, arg = spec.partition(":")
    if kind != "first-block":
        raise ValueError(f"step_cache must look like 'first-block:0.05', got {spec!r}")
    from diffusers.hooks import FirstBlockCacheConfig

    threshold = float(arg) if arg else 0.05
    if not 0 < threshold < 1:
        raise ValueError(f"first-block cache threshold must be in (0, 1), got {threshold}")
    return FirstBlockCacheConfig(threshold=threshold)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if DTYPES[name] is not None:
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.float32


def dtype_kwarg(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """`from_pretrained`'s dtype keyword: `dtype` in newer diffusers, `torch_dtype` before."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401  (present since `dtype`)
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


def denoisers(pipe: Any) -> list[torch.nn.Module]:
    """The denoiser module(s) of a pipeline: the UNet, or the transformer(s) (Wan 2.2 has two experts)."""
    found = [getattr(pipe, n, None) for n in ("unet", "transformer", "transformer_2")]
    return [m for m in found if isinstance(m, torch.nn.Module)]


def apply(pipe: Any, settings: SpeedSettings, device: torch.device) -> None:
    """Put the pipeline on `device` with every speed setting applied (dtype is applied at load time)."""
    models = denoisers(pipe)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark  # process-wide; one pipeline per worker
    if settings.attention_backend:
        for m in models:
            m.set_attention_backend(settings.attention_backend)
    if settings.step_cache:
        for m in models:
            if not hasattr(m, "enable_cache"):
                raise ValueError(
                    f"step_cache needs a transformer denoiser; {type(m).__name__} has no cache hooks"
                )
            m.enable_cache(parse_step_cache(settings.step_cache))
    if settings.channels_last:
        for m in models:  # 2D convolutions only: the UNet's temporal layers are 5D
            for conv in m.modules():
                if isinstance(conv, torch.nn.Conv2d):
                    conv.to(memory_format=torch.channels_last)
    if settings.vae_tiling and hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()
    if settings.cpu_offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif settings.cpu_offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    if settings.quantize:  # after the move (quantising on the GPU takes seconds), before compiling
        for m in models:
            quantize_denoiser(m, settings.quantize, device)
    mode = settings.compile
    if mode == "auto":
        mode = "off" if device.type != "cuda" else "auto"
    if mode != "off":
        for m in models:
            blocks = getattr(m, "_repeated_blocks", None)
            # Static graphs: a second shape (the other orientation, the conditional-only batch) gets its own
            # graph at warm-up instead of one dynamic-shape graph for all.
            kwargs: dict[str, Any] = {"dynamic": False}
            if settings.compile_mode:
                kwargs["mode"] = settings.compile_mode
            if mode == "blocks" or (mode == "auto" and blocks):
                m.compile_repeated_blocks(fullgraph=True, **kwargs)
            else:
                # Compile forward only: module hooks (stage timing, offload, caches) stay eager around it.
                m.forward = torch.compile(m.forward, **kwargs)
