"""Weight quantisation of the diffusion denoiser through torchao: a speed (fp8) or memory (int8) setting.

Why: the denoiser runs once per step (twice with guidance) and dominates a clip's time; its nn.Linear
layers hold nearly all its weights and FLOPs. On GPUs with float8 tensor cores (CUDA compute capability
8.9+: L4, L40S, H100, H200) "fp8-dynamic" stores each Linear weight in float8 with one scale per row and
quantises activations per row at run time, so the matmuls run in fp8 (`torch._scaled_mm`) at up to twice
the bf16 rate with half the weight memory. It is the scheme diffusers and torchao publish for video DiTs
(Wan, LTX, CogVideoX, Flux) on H100, and pays off most under torch.compile, which fuses the activation
quantisation into the neighbouring kernels.

Schemes (torchao 0.18 configs):
- "fp8-dynamic": Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()). CUDA >= 8.9 only (torchao
  asserts it), and only for bf16 weights (row-wise scaling is bf16-only); other Linear layers are skipped,
  e.g. the ones diffusers keeps in fp32 (Wan's time embedder).
- "fp8-weight": Float8WeightOnlyConfig(). Weights stored in fp8 and widened for each matmul, which runs in
  the weight's original dtype: a memory saver (half of bf16) on any device, not a speed-up.
- "int8-weight": Int8WeightOnlyConfig(), per-row scales. Same idea in int8: a memory saver on any device
  (on CUDA it is only fast under torch.compile, which fuses the dequantisation into the matmul).

Only Linear layers whose in and out features are multiples of 16 (what `torch._scaled_mm` takes) and at
least `min_features` wide are quantised: tiny projections gain nothing and lose accuracy.

torchao is optional (the `gpu` extra): nothing here imports it until `quantize_denoiser` runs.
Quantise after the pipeline is loaded in its dtype and before torch.compile; quantised weights move with
`.to(device)` and model CPU offload, so either side of `pipe.to(device)` works (on the GPU it is seconds,
on a CPU about 1.5-2 minutes per 14B parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from models.base import AnimatorUnavailable

QUANT_SCHEMES = ("fp8-dynamic", "fp8-weight", "int8-weight")
FP8_MIN_CAPABILITY = (8, 9)  # Ada / Hopper and newer: float8 tensor cores


class UnsupportedDevice(AnimatorUnavailable):
    """The device cannot run the scheme (fp8 matmuls without float8 tensor cores): the animator cannot be
    set up as configured, so a worker with it exits at start."""


def check_scheme(name: str) -> None:
    """Raise ValueError unless `name` is one of QUANT_SCHEMES (needs no torchao)."""
    if name not in QUANT_SCHEMES:
        raise ValueError(f"quantize must be one of {', '.join(QUANT_SCHEMES)}, got {name!r}")


def _config(scheme: str) -> Any:
    """torchao's config object for a scheme; raises RuntimeError when torchao is missing."""
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Float8WeightOnlyConfig,
            Int8WeightOnlyConfig,
            PerRow,
        )
    except ImportError as e:
        raise RuntimeError(
            f"quantize={scheme!r} needs torchao: pip install torchao (or the 'gpu' extra)"
        ) from e
    # set_inductor_config=False: torchao would otherwise switch on inductor's coordinate-descent
    # autotuning process-wide (much longer compiles); compile settings stay with SpeedSettings.
    if scheme == "fp8-dynamic":
        return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), set_inductor_config=False)
    if scheme == "fp8-weight":
        return Float8WeightOnlyConfig(set_inductor_config=False)
    return Int8WeightOnlyConfig(set_inductor_config=False)


def _check_device(scheme: str, device: torch.device) -> None:
    if scheme != "fp8-dynamic":
        return
    if device.type != "cuda" or not torch.cuda.is_available():
        raise UnsupportedDevice(
            f"quantize='fp8-dynamic' needs a CUDA GPU with compute capability >= 8.9 (float8 matmuls); "
            f"the denoiser runs on {device.type}. Use 'fp8-weight' or 'int8-weight' to save memory there."
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_MIN_CAPABILITY:
        raise UnsupportedDevice(
            f"quantize='fp8-dynamic' needs CUDA compute capability >= 8.9 (Ada, Hopper or newer); "
            f"{torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]}. "
            "Use 'fp8-weight' or 'int8-weight' instead."
        )


def _is_quantized(weight: torch.Tensor) -> bool:
    from torchao.utils import TorchAOBaseTensor

    return isinstance(weight, TorchAOBaseTensor)


def _fits(scheme: str, min_features: int) -> Callable[[torch.nn.Module], bool]:
    """A Linear layer the scheme can take: in/out features multiples of 16, not tiny; bf16 for fp8-dynamic."""

    def fits(module: torch.nn.Module) -> bool:
        if not isinstance(module, torch.nn.Linear):
            return False
        n_in, n_out = module.in_features, module.out_features
        if n_in % 16 or n_out % 16 or min(n_in, n_out) < min_features:
            return False
        if scheme != "fp8-dynamic" or _is_quantized(module.weight):
            return True
        return module.weight.dtype == torch.bfloat16  # row-wise fp8 takes bf16 weights only

    return fits


def quantize_denoiser(
    module: torch.nn.Module, scheme: str, device: torch.device, *, min_features: int = 16
) -> int:
    """Quantise the Linear weights of `module` in place with torchao; return how many were quantised.

    `device` is where the denoiser will run (checked for fp8 support); the weights are quantised where
    they are and stay there. Layers already quantised are left alone (a second call returns 0).
    Raises ValueError for an unknown scheme or a denoiser with no Linear layer the scheme can take,
    RuntimeError when torchao is missing, UnsupportedDevice when the device cannot run the scheme.
    """
    check_scheme(scheme)
    _check_device(scheme, device)
    config = _config(scheme)
    from torchao.quantization import quantize_

    fits = _fits(scheme, min_features)
    candidates = [m for m in module.modules() if isinstance(m, torch.nn.Linear) and fits(m)]
    if not candidates:
        bf16 = scheme == "fp8-dynamic"
        raise ValueError(
            f"quantize={scheme!r}: {type(module).__name__} has no {'bf16 ' if bf16 else ''}Linear layer "
            f"whose in and out features are multiples of 16 and at least {min_features}"
            + ("; load the denoiser with dtype=bf16" if bf16 else "")
        )
    todo = {id(m) for m in candidates if not _is_quantized(m.weight)}
    if todo:
        quantize_(module, config, filter_fn=lambda m, fqn: id(m) in todo)
    return sum(_is_quantized(m.weight) for m in candidates if id(m) in todo)
