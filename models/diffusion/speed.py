"""Speed and memory settings of the diffusion animator: each is a setting; `apply` puts them on a pipeline.

What each does and its status (see bench/gpu_i2v.py for the measurements):
- dtype: bf16 on CUDA (fp16 where bf16 is missing), fp32 on CPU. Implemented.
- attention_backend: None keeps PyTorch SDPA (diffusers' default processor, flash/mem-efficient kernels
  on CUDA); a name ("flash", "_native_cudnn", "sage", ...) is set on this pipeline's attention processors
  only (diffusers' process-wide default is left as it was). Wan and LTX only: the attention of SVD's UNet
  and of CogVideoX does not go through diffusers' attention dispatcher, so it is refused there. Implemented.
- compile: torch.compile of the denoiser: "blocks" compiles the repeated transformer block once (diffusers'
  regional compilation: a much shorter compile), "full" compiles the denoiser's forward; "auto" picks blocks
  where the model declares repeated blocks, else full, and only on CUDA. Graphs are static per shape
  (`dynamic=False`): the warm-up compiles both orientations (and, with guidance_until, both batch sizes)
  so that no job pays for a compile. Implemented; speed-up unmeasured.
- channels_last: NHWC convolutions for UNet denoisers (tensor cores like it). Implemented.
- cudnn_benchmark: let cuDNN time its convolution algorithms once per shape and keep the fastest (the UNet
  and the VAE decoder are convolution-heavy; shapes are fixed per orientation and the warm-up meets them).
  CUDA only. Implemented; speed-up unmeasured.
- decode_chunk_size: frames per VAE decode call (SVD: its temporal decoder mixes frames only within one
  call, so fewer calls mean fewer seams). "auto" decodes the whole clip at once where the GPU's free
  memory allows, else in balanced chunks (25 frames: 9/9/7, never 8/8/8/1). vae_tiling: spatial (and,
  for Wan/LTX/CogVideoX, temporal) tiles in the VAE; refused for SVD, whose VAE cannot tile. Implemented.
- cpu_offload: "model" moves each component to the GPU only while it runs (small GPUs); "sequential" goes
  layer by layer (slowest, least memory). Implemented (diffusers' hooks).
- offload_text_encoder: keep the text encoder in CPU memory and bring it to the GPU only for the prompt
  encoding (about a second of copying per job for UMT5-XXL's 11 GB). "auto": on where the family's table
  says the GPU needs the room (Wan 2.2 A14B: two 28.6 GB experts). Implemented.
- step_cache: "first-block:<threshold>" reuses the residual of all blocks but the first when the first
  block's output changed by less than the threshold (First-Block Cache / TeaCache family); transformer
  denoisers only (Wan, LTX, CogVideoX). With compile, the blocks' own computation is compiled and the
  cache's hooks stay eager around it (Dynamo cannot trace them). Its state is reset after every run,
  finished or not. Implemented; quality/speed effect not yet measured on a GPU.
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

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch

from models.diffusion.families import AUTO
from models.diffusion.quantize import check_scheme, quantize_denoiser

if TYPE_CHECKING:
    from diffusers.models.cache_utils import CacheMixin
    from diffusers.models.modeling_utils import ModelMixin

    from models.diffusion.families import Family

COMPILE_MODES = ("auto", "off", "blocks", "full")
OFFLOAD_MODES = ("off", "model", "sequential")
DTYPES = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

# Peak memory of SVD's temporal VAE decoder per decoded frame-pixel, at 2-byte dtypes. Measured as the
# peak resident memory of the real-size decoder (block_out_channels 128/256/512/512) on a CPU in fp32:
# ~5,600 bytes per frame-pixel, halved for bf16/fp16. 25 frames at 1024×576 come to ~41 GB.
SVD_DECODE_BYTES_PER_PIXEL = 2800


@dataclass(frozen=True)
class SpeedSettings:
    """Every speed and memory setting of the diffusion animator; defaults are the GPU production path."""

    dtype: str = "auto"
    attention_backend: str | None = None
    compile: str = "auto"
    compile_mode: str | None = None  # torch.compile mode, e.g. "max-autotune-no-cudagraphs"
    channels_last: bool = True
    cudnn_benchmark: bool = True
    decode_chunk_size: int | str | None = AUTO  # None: the whole clip in one call
    vae_tiling: bool = False
    cpu_offload: str = "off"
    offload_text_encoder: bool | str = AUTO
    step_cache: str | None = None
    quantize: str | None = None
    guidance: float | None = None
    guidance_until: float = 1.0
    warmup: bool | str = AUTO  # auto: on CUDA only, where kernels are chosen and graphs compiled

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SpeedSettings:
        """Settings from keyword options (VIVIFY_ANIMATOR_OPTIONS); an unknown name is refused by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"unknown animator option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**options)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if self.compile_mode and self.compile == "off":
            raise ValueError("compile_mode needs compile on ('auto', 'blocks' or 'full'), got compile='off'")
        if self.cpu_offload not in OFFLOAD_MODES:
            raise ValueError(
                f"cpu_offload must be one of {', '.join(OFFLOAD_MODES)}, got {self.cpu_offload!r}"
            )
        chunk = self.decode_chunk_size
        if chunk != AUTO and chunk is not None and (not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"decode_chunk_size must be 'auto', null or at least 1, got {chunk!r}")
        for name in ("warmup", "offload_text_encoder"):
            if getattr(self, name) not in (True, False, AUTO):
                raise ValueError(f"{name} must be true, false or 'auto', got {getattr(self, name)!r}")
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

    def check_for(self, family: Family) -> None:
        """Refuse, with the reason, the settings this family cannot honour (before anything is loaded)."""
        name = family.name
        unet = family.denoiser == "unet"
        if self.step_cache and unet:
            raise ValueError(f"{name}: step_cache needs a transformer denoiser; its UNet has no cache hooks")
        if self.step_cache and self.compile == "full":
            raise ValueError(
                "step_cache cannot be combined with compile='full': Dynamo cannot trace the cache's hooks; "
                "use compile='blocks' or 'auto', which compile the blocks and leave the hooks eager"
            )
        if self.step_cache and self.guidance_until < 1 and family.guidance_batched:
            # The cache keeps the previous step's residual; the batch halving at the cut-off would mix
            # batch sizes in it.
            raise ValueError(f"{name}: step_cache and guidance_until < 1 cannot be combined")
        if self.attention_backend and not family.attention_dispatch:
            raise ValueError(
                f"{name}: attention_backend acts through diffusers' attention dispatcher, which its denoiser "
                "does not use (it always runs PyTorch SDPA); leave attention_backend unset"
            )
        if self.vae_tiling and not family.vae_tiling:
            raise ValueError(
                f"{name}: its VAE cannot tile; bound decode memory with decode_chunk_size instead"
            )
        if isinstance(self.decode_chunk_size, int) and not family.decode_chunks:
            raise ValueError(
                f"{name}: decode_chunk_size applies to SVD's frame-chunked decoder only; use vae_tiling here"
            )
        if self.offload_text_encoder is True and not family.text_conditioned:
            raise ValueError(f"{name}: offload_text_encoder: this family has no text encoder")
        if self.offload_text_encoder is True and self.cpu_offload != "off":
            raise ValueError("offload_text_encoder is part of cpu_offload already; set one of them")

    def offloads_text_encoder(self, family: Family, device: torch.device) -> bool:
        if self.cpu_offload != "off" or device.type != "cuda" or not family.text_conditioned:
            return False
        return (
            family.offload_text_encoder
            if self.offload_text_encoder == AUTO
            else bool(self.offload_text_encoder)
        )

    def warms_up(self, device: torch.device) -> bool:
        return device.type == "cuda" if self.warmup == AUTO else bool(self.warmup)


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
    dtype = DTYPES[name]
    if dtype is not None:
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.float32


def dtype_kwarg(dtype: Any) -> dict[str, Any]:
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


def decode_chunk(settings: SpeedSettings, frames: int, size: tuple[int, int], device: torch.device) -> int:
    """Frames per SVD decode call: the whole clip where memory allows, else the fewest balanced chunks."""
    chunk = settings.decode_chunk_size
    if chunk is None:
        return frames
    if isinstance(chunk, int):
        return min(chunk, frames)
    if device.type != "cuda":
        return frames  # CPU memory is not the constraint a GPU's is
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # held by the cache
    per_frame = SVD_DECODE_BYTES_PER_PIXEL * size[0] * size[1]
    fits = max(1, int(0.85 * free // per_frame))
    return balanced_chunk(frames, fits)


def balanced_chunk(frames: int, most: int) -> int:
    """The chunk size that splits `frames` into the fewest calls of at most `most`, as evenly as a single
    chunk size can (the pipeline decodes [c, c, …, rest]): 25 by at most 8 → 7 (7/7/7/4), not 8/8/8/1."""
    calls = math.ceil(frames / max(1, most))
    return math.ceil(frames / calls)


def set_attention_backend(module: torch.nn.Module, backend: str) -> None:
    """Set `backend` on this module's attention processors only: diffusers' `set_attention_backend` also
    makes it the process-wide default, which is put back here."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    previous = _AttentionBackendRegistry._active_backend
    try:
        cast("ModelMixin", module).set_attention_backend(backend)
    finally:
        _AttentionBackendRegistry.set_active_backend(previous)
    if not any(getattr(getattr(m, "processor", None), "_attention_backend", None) for m in module.modules()):
        raise ValueError(f"{type(module).__name__} has no attention processor that takes attention_backend")


def place(pipe: Any, device: torch.device, keep_on_cpu: tuple[str, ...] = ()) -> None:
    """Move every component to `device` except those kept on the CPU (moved one by one, so the GPU never
    holds a component that is meant to stay off it)."""
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            component.to("cpu" if name in keep_on_cpu else device)


def offload_between_calls(module: torch.nn.Module, device: torch.device) -> None:
    """Keep `module` in CPU memory; move it to `device` for each call and back after it."""
    module.register_forward_pre_hook(lambda m, _args: m.to(device))
    module.register_forward_hook(lambda m, _args, _out: m.to("cpu"))


def reset_caches(pipe: Any) -> None:
    """Forget the step cache's state. diffusers resets it only at the end of a call that finished; after a
    cancel, an error or out-of-memory it would otherwise carry the last shape into the next job."""
    for m in denoisers(pipe):
        reset = getattr(m, "_reset_stateful_cache", None)
        if reset is not None and getattr(m, "is_cache_enabled", False):
            reset()


def apply(pipe: Any, settings: SpeedSettings, device: torch.device, family: Family) -> None:
    """Put the pipeline on `device` with every speed setting applied (dtype is applied at load time)."""
    models = denoisers(pipe)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark  # process-wide; one pipeline per worker
    if settings.attention_backend:
        for m in models:
            set_attention_backend(m, settings.attention_backend)
    if settings.channels_last:
        for m in models:  # 2D convolutions only: the UNet's temporal layers are 5D
            for conv in m.modules():
                if isinstance(conv, torch.nn.Conv2d):
                    conv.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stub lacks memory_format
    if settings.vae_tiling:
        pipe.vae.enable_tiling()
    if settings.cpu_offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif settings.cpu_offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif settings.offloads_text_encoder(family, device):
        place(pipe, device, keep_on_cpu=("text_encoder",))
        offload_between_calls(pipe.text_encoder, device)
    else:
        pipe.to(device)
    if settings.quantize:  # after the move (quantising on the GPU takes seconds), before compiling
        for m in models:
            quantize_denoiser(m, settings.quantize, device)
    _compile(models, settings, device)
    if settings.step_cache:  # after compiling: the cache's hooks wrap the compiled blocks and stay eager
        for m in models:
            cast("CacheMixin", m).enable_cache(parse_step_cache(settings.step_cache))


def _compile(models: list[torch.nn.Module], settings: SpeedSettings, device: torch.device) -> None:
    mode = settings.compile
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return
    # Static graphs: a second shape (the other orientation, the conditional-only batch) gets its own
    # graph at warm-up instead of one dynamic-shape graph for all.
    kwargs: dict[str, Any] = {"dynamic": False}
    if settings.compile_mode:
        kwargs["mode"] = settings.compile_mode
    for m in models:
        blocks = getattr(m, "_repeated_blocks", None)
        if mode == "full" or not (mode == "blocks" or blocks):
            # Compile forward only: module hooks (stage timing, offload, caches) stay eager around it.
            m.forward = torch.compile(m.forward, **kwargs)
        elif settings.step_cache:
            # The blocks' own forward, so the cache hooks that will wrap it run eagerly.
            for block in m.modules():
                if type(block).__name__ in (blocks or ()):
                    block.forward = torch.compile(block.forward, fullgraph=True, **kwargs)
        else:
            cast("ModelMixin", m).compile_repeated_blocks(fullgraph=True, **kwargs)
