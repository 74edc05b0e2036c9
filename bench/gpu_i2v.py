"""GPU benchmark of the diffusion image-to-video path: stock diffusers defaults vs our optimised path.

Builds each supported architecture at its real size with random weights (the configs are written out
below; nothing is downloaded), runs the whole photo → MP4 path (`models.render.render_clip` with the
`DiffusionAnimator` the worker uses) at production settings, and reports per stage: seconds, peak GPU
memory, and for the denoiser its achieved TFLOP/s and model-FLOPs utilisation (MFU) against the bf16
matmul peak measured on the same GPU in the same run. Both variants run in one process; the ratio is
printed. Denoiser FLOPs are counted exactly, without computing, by replaying the denoiser's first call
on fake tensors (FakeTensorMode + FlopCounterMode, attention through SDPA's math path so it is counted).

    python bench/gpu_i2v.py                                   # SVD-XT, 25 frames 1024×576, 25 steps
    python bench/gpu_i2v.py --family svd-xt --frames 25 --size 1024x576 --steps 25
    python bench/gpu_i2v.py --family wan2.1 --variants optimised --stock-dtype bf16
    python bench/gpu_i2v.py --tiny --device cpu               # smoke test of this script on tiny models
    python bench/gpu_i2v.py --check-configs                   # real-size models on fake tensors (CPU)

Variants: `stock` = diffusers' defaults (fp32 weights as `from_pretrained` loads them, no compile, the
whole clip decoded at once); `optimised` = the animator's GPU defaults (bf16, SDPA, torch.compile of the
denoiser, channels-last convolutions, cuDNN autotuning, chunked VAE decode); `optimised+interval` adds
guidance on the first 60 % of the steps only (`guidance_until=0.6`); `optimised+fp8` adds fp8 matmuls for
the denoiser's Linear layers (`quantize="fp8-dynamic"`, torchao; needs CUDA >= 8.9); `fast` is both;
`optimised+cache` adds the first-block step cache (transformer families; its TFLOP/s counts every denoiser
call as a full forward, so it is an effective rate). TFLOP/s counts the FLOPs the denoiser did
(conditional-only calls count half) and MFU divides by the bf16 peak even where fp8 matmuls run. Each
variant gets one untimed warm-up run (which includes compilation, reported as `warm s`), then `--repeats`
timed runs; the median run is reported.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from matplotlib import cbook  # noqa: E402
from PIL import Image  # noqa: E402

from models.base import AnimationRequest, Stage  # noqa: E402
from models.diffusion import FAMILIES, DiffusionAnimator  # noqa: E402
from models.diffusion.families import SVD_SCHEDULER_CONFIG  # noqa: E402
from models.diffusion.guidance import latent_batch  # noqa: E402
from models.diffusion.quantize import UnsupportedDevice  # noqa: E402
from models.diffusion.speed import denoisers, dtype_kwarg  # noqa: E402
from models.render import render_clip  # noqa: E402

GB = 1024**3
ALIASES = {"svd-xt": "svd", "wan": "wan2.1"}
STAGES = [
    s.value for s in (Stage.ANALYZING, Stage.ANIMATING, Stage.DECODING, Stage.POSTPROCESSING, Stage.ENCODING)
]
VARIANTS = {
    "stock": {
        "compile": "off",
        "channels_last": False,
        "cudnn_benchmark": False,
        "decode_chunk_size": None,
        "warmup": False,
    },
    "optimised": {"warmup": False},
    "optimised+interval": {"warmup": False, "guidance_until": 0.6},
    "optimised+fp8": {"warmup": False, "quantize": "fp8-dynamic"},
    "fast": {"warmup": False, "guidance_until": 0.6, "quantize": "fp8-dynamic"},
    "optimised+cache": {"warmup": False, "step_cache": "first-block:0.05"},
}


# ---- real-size architectures (random weights) -------------------------------------------------------------
def _words() -> Any:
    from tests.fixtures.tiny_pipelines import WORDS, word_tokenizer

    return word_tokenizer(WORDS)  # prompts only need valid ids; the encoder has its real vocabulary size


def _clip_vit_h(with_projection: bool) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
        projection_dim=1024,
        hidden_act="gelu",
    )
    return (CLIPVisionModelWithProjection if with_projection else CLIPVisionModel)(config)


def _t5_xxl(umt5: bool) -> Any:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    common = dict(
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=32,
    )
    if umt5:
        return UMT5EncoderModel(UMT5Config(vocab_size=256384, **common))
    return T5EncoderModel(T5Config(vocab_size=32128, **common))


def build_svd(modules: Callable[[], Any] = nullcontext) -> Any:
    """SVD-XT 1.1: ViT-H/14 image encoder, 1.5 B spatio-temporal UNet, 98 M temporal VAE."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor

    scheduler = EulerDiscreteScheduler(**SVD_SCHEDULER_CONFIG)
    with modules():
        vae = AutoencoderKLTemporalDecoder(
            block_out_channels=[128, 256, 512, 512],
            layers_per_block=2,
            down_block_types=["DownEncoderBlock2D"] * 4,
            latent_channels=4,
        )
        image_encoder, unet = _clip_vit_h(True), UNetSpatioTemporalConditionModel()
    return StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(),
    )


def build_wan21(modules: Callable[[], Any] = nullcontext) -> Any:
    """Wan 2.1 I2V 14B 480p: UMT5-XXL, CLIP ViT-H/14, 40-layer 5120-wide DiT, Wan VAE."""
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import CLIPImageProcessor

    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    )
    tokenizer = _words()
    with modules():
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=40,
            attention_head_dim=128,
            in_channels=36,
            out_channels=16,
            text_dim=4096,
            freq_dim=256,
            ffn_dim=13824,
            num_layers=40,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
            image_dim=1280,
            added_kv_proj_dim=5120,
            rope_max_seq_len=1024,
        )
        text_encoder, vae, image_encoder = _t5_xxl(umt5=True), AutoencoderKLWan(), _clip_vit_h(False)
    return WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        image_processor=CLIPImageProcessor(),
        image_encoder=image_encoder,
        transformer=transformer,
    )


def build_ltx(modules: Callable[[], Any] = nullcontext) -> Any:
    """LTX-Video 2B (0.9.x): T5-XXL, 28-layer DiT, 1:192-compression video VAE."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )

    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
    )
    tokenizer = _words()
    with modules():
        vae, text_encoder, transformer = (
            AutoencoderKLLTXVideo(),
            _t5_xxl(umt5=False),
            LTXVideoTransformer3DModel(),
        )
    return LTXImageToVideoPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer
    )


def build_cogvideox(modules: Callable[[], Any] = nullcontext) -> Any:
    """CogVideoX-5B I2V: T5-XXL, 42-layer expert DiT with learned positions, CogVideoX VAE."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDPMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXTransformer3DModel,
    )

    tokenizer = _words()
    with modules():
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=48,
            attention_head_dim=64,
            in_channels=32,
            out_channels=16,
            num_layers=42,
            text_embed_dim=4096,
            time_embed_dim=512,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=True,
        )
        text_encoder, vae = _t5_xxl(umt5=False), AutoencoderKLCogVideoX()
    scheduler = CogVideoXDPMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        snr_shift_scale=1.0,
        timestep_spacing="trailing",
    )
    return CogVideoXImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )


BUILDERS: dict[str, Callable[..., Any]] = {
    "svd": build_svd,
    "wan2.1": build_wan21,
    "ltx": build_ltx,
    "cogvideox": build_cogvideox,
}


@contextmanager
def on_device(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Create modules directly on the device in the target dtype: no fp32 CPU copy of 14 B random weights."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_on(builder: Callable[..., Any], device: torch.device, dtype: torch.dtype) -> Any:
    return builder(lambda: on_device(device, dtype)).to(device, dtype)


def build_tiny(family: str, device: torch.device, dtype: torch.dtype) -> Any:
    """The test suite's tiny pipelines, saved and loaded back the way the worker loads a folder."""
    from diffusers import DiffusionPipeline

    from tests.fixtures import tiny_pipelines

    builder = {"svd": tiny_pipelines.build_tiny_svd, "wan2.1": tiny_pipelines.build_tiny_wan}[family]
    with tempfile.TemporaryDirectory() as tmp:
        folder = builder(Path(tmp) / family)
        return DiffusionPipeline.from_pretrained(folder, **dtype_kwarg(dtype)).to(device)


# ---- measuring ---------------------------------------------------------------------------------------------
def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, n: int = 8192, iters: int = 30) -> float:
    """Best measured dense matmul throughput: the denominator of MFU."""
    if device.type == "cpu":
        n, iters = 1024, 5
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(3):
        for _ in range(3):
            a @ b
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - t0) / 1e12)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(module: torch.nn.Module, args: tuple, kwargs: dict) -> int:
    """FLOPs of one call of `module` on these inputs, on a fake-tensor replica (nothing is computed)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils._pytree import tree_map
    from torch.utils.flop_counter import FlopCounterMode

    mode = FakeTensorMode(allow_non_fake_inputs=False)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(module.dtype)
    try:
        with mode, torch.device(next(module.parameters()).device):
            replica = type(module).from_config(module.config)
    finally:
        torch.set_default_dtype(previous)
    fake = tree_map(lambda v: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v, (args, kwargs))
    counter = FlopCounterMode(display=False)
    with mode, sdpa_kernel(SDPBackend.MATH), counter, torch.no_grad():
        replica(*fake[0], **fake[1])
    return counter.get_total_flops()


class CallRecorder:
    """Counts denoiser calls with their latent batch sizes, and keeps the first call's inputs (to count its
    FLOPs afterwards; FLOPs scale with the batch, so a conditional-only call is half a guided one)."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.batches: list[int] = []
        self.first: tuple[torch.nn.Module, tuple, dict] | None = None
        self.handles = [m.register_forward_pre_hook(self._hook(m), with_kwargs=True) for m in modules]

    @property
    def calls(self) -> int:
        return len(self.batches)

    def batch_units(self) -> float:
        """The calls in units of the first call's batch."""
        return sum(self.batches) / self.batches[0] if self.batches else 0.0

    def _hook(self, module: torch.nn.Module) -> Callable:
        def hook(_: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            self.batches.append(latent_batch(args, kwargs))
            if self.first is None:
                self.first = (module, args, kwargs)

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


class StageMeter:
    """A progress callback that records the peak GPU memory of each stage."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.current: str | None = None
        self.peak_gb: dict[str, float] = {}

    def _close_stage(self) -> None:
        if self.current is not None and self.device.type == "cuda":
            _sync(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / GB
            self.peak_gb[self.current] = max(self.peak_gb.get(self.current, 0.0), peak)
            torch.cuda.reset_peak_memory_stats(self.device)

    def __call__(self, stage: Stage, fraction: float, detail: str = "") -> None:
        if stage.value != self.current:
            self._close_stage()
            self.current = stage.value

    def finish(self) -> None:
        self._close_stage()
        self.current = None


@dataclass
class Result:
    family: str
    variant: str
    dtype: str
    size: str
    frames: int
    steps: int
    warm_s: float
    total_s: float
    stage_s: dict[str, float]
    peak_gb: dict[str, float]
    denoiser_calls: int
    denoiser_tflop: float
    denoiser_tflops: float
    mfu: float
    error: str | None = None
    runs_total_s: list[float] = field(default_factory=list)


def run_variant(
    family: str, variant: str, args: argparse.Namespace, device: torch.device, peak_tflops: float
) -> Result:
    dtype = {"stock": args.stock_dtype}.get(variant, "bf16" if device.type == "cuda" else "fp32")
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    fam = FAMILIES[family]
    size = args.size or (fam.size if not args.tiny else (64, 64))
    frames = args.frames or (fam.frames if not args.tiny else (8 if family == "svd" else 9))
    steps = args.steps or (fam.steps if not args.tiny else 4)
    request = AnimationRequest(seed=0, size=size, frames=frames, steps=steps, motion="look left and smile")
    base = Result(
        family, variant, dtype, f"{size[0]}x{size[1]}", frames, steps, 0.0, 0.0, {}, {}, 0, 0.0, 0.0, 0.0
    )
    if VARIANTS[variant].get("step_cache") and family == "svd":
        base.error = "n/a: the step cache needs a transformer denoiser; SVD has a UNet"
        return base
    pipe = animator = None
    try:
        t0 = time.perf_counter()
        build = build_tiny if args.tiny else (lambda f, d, t: build_on(BUILDERS[f], d, t))
        pipe = build(family, device, torch_dtype)
        print(f"[{family}/{variant}] built {dtype} in {time.perf_counter() - t0:.1f} s", flush=True)
        options = {**VARIANTS[variant], "device": str(device)}
        animator = DiffusionAnimator.from_pipeline(pipe, family=family, **options)
        photo = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
        t0 = time.perf_counter()
        animator.setup()
        render_clip(animator, photo, request)  # warm-up: kernels chosen, compiled
        base.warm_s = time.perf_counter() - t0
        runs = []
        for _ in range(args.repeats):
            recorder = CallRecorder(denoisers(animator.pipe))
            meter = StageMeter(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            clip = render_clip(animator, photo, request, meter)
            total = time.perf_counter() - t0
            meter.finish()
            recorder.close()
            runs.append((total, clip.stage_seconds, meter.peak_gb, recorder))
        total, stage_s, peak_gb, recorder = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        base.runs_total_s = [round(r[0], 3) for r in runs]
        base.total_s, base.stage_s, base.peak_gb = total, stage_s, peak_gb
        base.denoiser_calls = recorder.calls
        if recorder.first is not None:
            flops = recorder.batch_units() * count_flops(*recorder.first)
            base.denoiser_tflop = flops / 1e12
            base.denoiser_tflops = base.denoiser_tflop / max(stage_s[Stage.ANIMATING.value], 1e-9)
            base.mfu = base.denoiser_tflops / peak_tflops
    except torch.OutOfMemoryError as e:
        base.error = f"out of memory: {str(e).splitlines()[0]}"
    except UnsupportedDevice as e:  # fp8 on a device without float8 matmuls
        base.error = f"n/a: {str(e).split(';')[0]}"
    finally:
        del pipe, animator
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return base


def print_table(results: list[Result], peak_tflops: float, device: torch.device, peak_dtype: str) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"\nDevice: {name}; measured {peak_dtype} matmul peak {peak_tflops:.3g} TFLOP/s; "
        f"torch {torch.__version__}"
    )
    head = [
        "family",
        "variant",
        "dtype",
        "size×frames×steps",
        "warm s",
        *[f"{s} s" for s in STAGES],
        "total s",
        "peak GB (per stage)",
        "denoiser TFLOP",
        "TFLOP/s",
        "MFU",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        if r.error:
            print(f"| {r.family} | {r.variant} | {r.dtype} | {r.size}×{r.frames}×{r.steps} | {r.error} |")
            continue
        peaks = "/".join(f"{r.peak_gb.get(s, 0):.1f}" for s in STAGES) if r.peak_gb else "n/a"
        cells = [
            r.family,
            r.variant,
            r.dtype,
            f"{r.size}×{r.frames}×{r.steps}",
            f"{r.warm_s:.1f}",
            *[f"{r.stage_s.get(s, 0):.2f}" for s in STAGES],
            f"{r.total_s:.2f}",
            peaks,
            f"{r.denoiser_tflop:.3g}",
            f"{r.denoiser_tflops:.3g}",
            f"{100 * r.mfu:.0f}%",
        ]
        print("| " + " | ".join(cells) + " |")
    for fam in dict.fromkeys(r.family for r in results):
        by = {r.variant: r for r in results if r.family == fam and not r.error}
        if "stock" in by:
            for v, r in by.items():
                if v != "stock":
                    s = by["stock"]
                    anim = s.stage_s[Stage.ANIMATING.value] / r.stage_s[Stage.ANIMATING.value]
                    print(
                        f"{fam}: speed-up of {v} over stock: {s.total_s / r.total_s:.2f}× end to end, "
                        f"{anim:.2f}× in denoising"
                    )


def check_configs() -> None:
    """Build every real-size denoiser and VAE on fake tensors (no memory, no GPU): parameter counts, and
    the FLOPs of one SVD-XT UNet call at 25×576×1024 as a check of the counter."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    for family, builder in BUILDERS.items():
        pipe = builder(FakeTensorMode)
        parts = {
            n: sum(p.numel() for p in m.parameters()) / 1e9
            for n, m in pipe.components.items()
            if isinstance(m, torch.nn.Module)
        }
        print(f"{family}: " + ", ".join(f"{n} {v:.3f} B" for n, v in parts.items()), flush=True)
        if family == "svd":
            unet = pipe.unet
    sample = torch.zeros(1, 25, 8, 72, 128)
    args = (sample, torch.tensor(1.0), torch.zeros(1, 1, 1024), torch.zeros(1, 3))
    print(f"svd: one UNet call, batch 1, 25×576×1024: {count_flops(unet, args, {}) / 1e12:.1f} TFLOP")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", default="svd", help=f"comma list of {', '.join(BUILDERS)} (svd-xt = svd)")
    parser.add_argument("--variants", default="stock,optimised", help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--size", type=lambda s: tuple(int(v) for v in s.lower().split("x")), default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--stock-dtype",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="weights of the stock variant (fp32 is what from_pretrained loads by default)",
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (smoke test of this script)")
    parser.add_argument("--check-configs", action="store_true", help="real-size configs on fake tensors, CPU")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.check_configs:
        check_configs()
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device; use --tiny --device cpu for a smoke run")
    families = [ALIASES.get(f, f) for f in args.family.split(",")]
    if args.tiny:
        families = [f for f in families if f in ("svd", "wan2.1")] or ["svd"]
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak_tflops(device, peak_dtype)
    print(f"measured {peak_dtype} matmul peak: {peak:.3g} TFLOP/s", flush=True)
    if args.tiny:
        print("tiny models: this checks that the script works; its timings are not a benchmark", flush=True)
    results = [run_variant(f, v, args, device, peak) for f in families for v in args.variants.split(",")]
    print_table(results, peak, device, str(peak_dtype).removeprefix("torch."))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.error is None or r.error.startswith("n/a") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
