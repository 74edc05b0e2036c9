"""torchao weight quantisation of the denoiser, on a tiny random-weight Wan 2.1 transformer.

On a CPU: int8 and fp8 weight-only quantise and still denoise close to the unquantised model; fp8 dynamic
(float8 matmuls) is refused with a clear error. On a CUDA GPU of compute capability 8.9+ the fp8-dynamic
test runs the tiny transformer in float8 instead. torchao is a test dependency: no torchao, the module
fails to import (on purpose, not a skip).
"""

from __future__ import annotations

import copy
import importlib
import sys
from pathlib import Path

import pytest
import torch
import torchao  # noqa: F401  (a missing torchao must fail this module loudly)
from diffusers import WanTransformer3DModel
from PIL import Image
from torchao.utils import TorchAOBaseTensor

import models.diffusion
from models.diffusion.quantize import QUANT_SCHEMES, UnsupportedDevice, check_scheme, quantize_denoiser

CPU = torch.device("cpu")
SKIPPED = {"condition_embedder.text_embedder.linear_1"}  # in_features 24: not a multiple of 16

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny_wan() -> WanTransformer3DModel:
    """Wan 2.1's transformer with every width a multiple of 16 but the text input (24)."""
    torch.manual_seed(0)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=16,
        out_channels=16,
        text_dim=24,
        freq_dim=64,
        ffn_dim=64,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    ).eval()


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 16, 2, 8, 8, generator=g)
    text = torch.randn(1, 5, 24, generator=g)
    return latents, torch.tensor([500]), text


def denoise(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype) -> torch.Tensor:
    device = next(model.parameters()).device
    latents, t, text = inputs
    with torch.no_grad():
        out = model(latents.to(device, dtype), t.to(device), text.to(device, dtype), return_dict=False)[0]
    return out.float().cpu()


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).norm() / ref.norm()).item()


def linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def test_check_scheme_accepts_the_schemes_and_names_them_when_rejecting() -> None:
    for name in QUANT_SCHEMES:
        check_scheme(name)
    for bad in ("fp8", "int4-weight", "", "FP8-DYNAMIC"):
        with pytest.raises(ValueError, match="fp8-dynamic, fp8-weight, int8-weight") as err:
            check_scheme(bad)
        assert repr(bad) in str(err.value)


def test_unknown_scheme_is_refused_before_touching_the_model(tiny_wan: WanTransformer3DModel) -> None:
    model = copy.deepcopy(tiny_wan)
    with pytest.raises(ValueError, match="int8-weight"):
        quantize_denoiser(model, "int8", CPU)
    assert not any(isinstance(m.weight, TorchAOBaseTensor) for m in linears(model).values())


@pytest.mark.parametrize(
    ("scheme", "storage", "layer_tol", "output_tol"),
    [("int8-weight", torch.int8, 0.01, 0.01), ("fp8-weight", torch.float8_e4m3fn, 0.05, 0.05)],
)
def test_weight_only_schemes_quantise_on_cpu_and_still_denoise(
    tiny_wan: WanTransformer3DModel,
    inputs: tuple[torch.Tensor, ...],
    scheme: str,
    storage: torch.dtype,
    layer_tol: float,
    output_tol: float,
) -> None:
    ref = denoise(tiny_wan, inputs, torch.float32)
    model = copy.deepcopy(tiny_wan)
    originals = {name: m.weight.detach().clone() for name, m in linears(model).items()}

    count = quantize_denoiser(model, scheme, CPU)

    layers = linears(model)
    quantised = {name for name, m in layers.items() if isinstance(m.weight, TorchAOBaseTensor)}
    assert quantised == set(layers) - SKIPPED
    assert count == len(quantised) == 25
    assert type(layers[next(iter(SKIPPED))].weight) is torch.nn.Parameter
    for name in quantised:
        weight = layers[name].weight
        assert weight.qdata.dtype == storage, name  # stored narrow, not merely wrapped
        assert relative_error(weight.dequantize().float(), originals[name]) < layer_tol, name

    out = denoise(model, inputs, torch.float32)
    assert out.shape == ref.shape
    err = relative_error(out, ref)
    assert 0 < err < output_tol, f"{scheme}: relative error {err:.4f}"

    assert quantize_denoiser(model, scheme, CPU) == 0  # already quantised: left alone
    assert torch.equal(denoise(model, inputs, torch.float32), out)


def test_min_features_leaves_small_layers_alone(tiny_wan: WanTransformer3DModel) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 32), torch.nn.Linear(32, 64))
    assert quantize_denoiser(model, "int8-weight", CPU, min_features=64) == 1
    assert [isinstance(m.weight, TorchAOBaseTensor) for m in model] == [True, False, False]

    wan = copy.deepcopy(tiny_wan)  # every Linear of the tiny Wan has a side of 32 or 24
    with pytest.raises(ValueError, match="at least 48"):
        quantize_denoiser(wan, "int8-weight", CPU, min_features=48)
    assert not any(isinstance(m.weight, TorchAOBaseTensor) for m in linears(wan).values())


def test_fp8_dynamic_is_refused_on_cpu(tiny_wan: WanTransformer3DModel) -> None:
    model = copy.deepcopy(tiny_wan).to(torch.bfloat16)
    with pytest.raises(UnsupportedDevice, match=r"compute capability >= 8\.9"):
        quantize_denoiser(model, "fp8-dynamic", CPU)
    assert not any(isinstance(m.weight, TorchAOBaseTensor) for m in linears(model).values())


def test_fp8_dynamic_on_cuda(tiny_wan: WanTransformer3DModel, inputs: tuple[torch.Tensor, ...]) -> None:
    """Float8 matmuls where the GPU has them; everywhere else the same clear refusal for device 'cuda'."""
    cuda = torch.device("cuda")
    fp8_gpu = torch.cuda.is_available() and torch.cuda.get_device_capability(cuda) >= (8, 9)
    model = copy.deepcopy(tiny_wan).to(cuda if torch.cuda.is_available() else CPU, torch.bfloat16)
    if not fp8_gpu:
        with pytest.raises(UnsupportedDevice, match=r"compute capability >= 8\.9"):
            quantize_denoiser(model, "fp8-dynamic", cuda)
        return
    ref = denoise(model, inputs, torch.bfloat16)
    count = quantize_denoiser(model, "fp8-dynamic", cuda)
    layers = linears(model)
    quantised = {name for name, m in layers.items() if isinstance(m.weight, TorchAOBaseTensor)}
    assert quantised == set(layers) - SKIPPED
    assert count == len(quantised)
    out = denoise(model, inputs, torch.bfloat16)
    err = relative_error(out, ref)
    assert 0 < err < 0.1, f"fp8-dynamic: relative error {err:.4f}"
    # fp32 weights (what diffusers keeps in fp32, or a dtype=fp32 load) cannot take row-wise fp8.
    with pytest.raises(ValueError, match="dtype=bf16"):
        quantize_denoiser(copy.deepcopy(tiny_wan).to(cuda), "fp8-dynamic", cuda)


def test_without_torchao_the_names_check_and_quantising_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh import of the module with torchao unimportable: check_scheme works, quantising explains."""
    for name in [n for n in sys.modules if n == "torchao" or n.startswith("torchao.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import torchao...` now raises ImportError
    original = sys.modules["models.diffusion.quantize"]
    monkeypatch.setattr(models.diffusion, "quantize", original)  # the import below rebinds it
    monkeypatch.delitem(sys.modules, "models.diffusion.quantize")
    fresh = importlib.import_module("models.diffusion.quantize")
    assert fresh is not original

    fresh.check_scheme("fp8-dynamic")
    with pytest.raises(ValueError, match="int8-weight"):
        fresh.check_scheme("nf4")
    with pytest.raises(RuntimeError, match="pip install torchao"):
        fresh.quantize_denoiser(torch.nn.Linear(32, 32), "int8-weight", CPU)


def test_the_animator_quantises_its_denoiser_and_still_animates(
    tmp_path: Path, portrait: Image.Image
) -> None:
    """The `quantize` speed setting through the worker's loading path: folder → animator → frames."""
    from bench.tiny_pipelines import build_tiny_wan
    from models.base import AnimationRequest
    from models.diffusion.animator import DiffusionAnimator
    from models.diffusion.speed import SpeedSettings

    folder = build_tiny_wan(tmp_path / "wan")
    plain = DiffusionAnimator(model=str(folder), speed=SpeedSettings(warmup=False))
    int8 = DiffusionAnimator(model=str(folder), speed=SpeedSettings(quantize="int8-weight", warmup=False))
    request = AnimationRequest(seed=3, steps=2)
    ref, out = plain.animate(portrait, request).frames, int8.animate(portrait, request).frames
    assert any(isinstance(m.weight, TorchAOBaseTensor) for m in linears(int8.pipe.transformer).values())
    assert not any(isinstance(m.weight, TorchAOBaseTensor) for m in linears(plain.pipe.transformer).values())
    assert out.shape == ref.shape
    assert 0 < abs(out.astype(int) - ref.astype(int)).mean() < 8  # close, not identical

    with pytest.raises(UnsupportedDevice, match=r"compute capability >= 8\.9"):
        DiffusionAnimator(
            model=str(folder), speed=SpeedSettings(quantize="fp8-dynamic", dtype="bf16", warmup=False)
        ).setup()
    with pytest.raises(ValueError, match="sequential"):
        DiffusionAnimator(
            model=str(folder), speed=SpeedSettings(quantize="int8-weight", cpu_offload="sequential")
        )
    with pytest.raises(ValueError, match="needs dtype bf16"):
        DiffusionAnimator(model=str(folder), speed=SpeedSettings(quantize="fp8-dynamic", dtype="fp32"))
