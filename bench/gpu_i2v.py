"""GPU benchmark of the diffusion image-to-video path: stock diffusers defaults vs our optimised path.

Builds each supported architecture at its real size with random weights (the widths are written out
below, the shapes and schedulers come from models/diffusion/families.py; nothing is downloaded), runs
the whole photo → MP4 path (`models.render.render_clip` with the `DiffusionAnimator` the worker uses)
at production settings, and reports per stage: seconds, peak GPU memory, and for the denoiser its
achieved TFLOP/s and model-FLOPs utilisation (MFU) against the bf16 matmul peak measured on the same GPU
in the same run. All variants run in one process; the speed-ups are
printed. Denoiser FLOPs are counted exactly, without computing, by replaying the denoiser's first call
on fake tensors (FakeTensorMode + FlopCounterMode, attention through SDPA's math path so it is counted).

    python bench/gpu_i2v.py                                   # SVD-XT, 25 frames 1024×576, 25 steps
    python bench/gpu_i2v.py --family wan2.1 --steps 5 --variants optimised --budget-s 300
    python bench/gpu_i2v.py --tiny --device cpu               # smoke test of this script on tiny models
    python bench/gpu_i2v.py --check-configs                   # real-size models on fake tensors (CPU)
    python bench/gpu_i2v.py --report a.json b.json            # the tables again, from result files
    bash bench/gpu_plan.sh                                    # the whole plan for one lent GPU

Variants: `stock-bf16` and `stock-fp32` = diffusers' defaults in bf16 and in fp32 (what `from_pretrained`
loads when given no dtype): SDPA, no compile, no channels-last, no cuDNN autotuning, the whole clip
decoded in one call. `optimised` = the animator's GPU defaults (bf16, SDPA, torch.compile of the
denoiser, channels-last convolutions, cuDNN autotuning, decode_chunk_size "auto", the family's
full-precision components); `optimised+interval` adds guidance on the first 60 % of the steps only
(`guidance_until=0.6`); `optimised+fp8` adds fp8 matmuls for the denoiser's Linear layers
(`quantize="fp8-dynamic"`, torchao; needs CUDA >= 8.9); `fast` is both; `optimised+cache` adds the
first-block step cache (transformer families; its TFLOP/s counts every denoiser call as a full forward, so
it is an effective rate, and with random weights its hit rate says nothing about real ones). TFLOP/s counts
the FLOPs the denoiser did (conditional-only calls count half) and MFU divides by the bf16 peak even where
fp8 matmuls run.

Each row: build, then an untimed warm-up of 2 steps at the timed run's size and frames (`warm s`: setup,
torch.compile, cuDNN autotuning, first-call costs; with a guidance interval one step guided and one not,
so both batch sizes are compiled), then `--repeats` timed runs; the median is reported. Non-stock variants
are bf16 on CUDA (`--dtype` to change). A row that fails (any exception, building included) is recorded
with the error's type and first line, and the run goes on; one that fails after its denoising loop (a
whole-clip decode out of memory) keeps the stages it finished, with the error where its total would be,
and still compares in denoising. Each row is printed as soon as it finishes and the --json file is
rewritten with it, so a run cut short keeps every finished row. With `--budget-s`, a row is started only
if the time since start plus its estimate (FLOP-based priors below, corrected by the rows already
measured, also those in --calibrate files) stays inside the budget; otherwise it is recorded as
`skipped: time budget`.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

STARTED = time.monotonic()  # --budget-s counts from here, before the heavy imports

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from matplotlib import cbook  # noqa: E402
from PIL import Image  # noqa: E402

from bench.gpu_costs import MFU_COMPILED, MFU_EAGER, PRIORS  # noqa: E402
from models.base import AnimationRequest, Stage  # noqa: E402
from models.diffusion.animator import DiffusionAnimator  # noqa: E402
from models.diffusion.families import (  # noqa: E402
    FAMILIES,  # noqa: E402
    PRODUCTION_SHAPES,
    SCHEDULERS,
    Shape,
)
from models.diffusion.guidance import guided_steps, latent_batch  # noqa: E402
from models.diffusion.quantize import UnsupportedDevice  # noqa: E402
from models.diffusion.speed import (  # noqa: E402
    SpeedSettings,  # noqa: E402
    denoisers,
    dtype_kwarg,
)
from models.render import render_clip  # noqa: E402

GB = 1024**3
ALIASES = {"svd-xt": "svd", "wan": "wan2.1"}
STAGES = [
    s.value for s in (Stage.ANALYZING, Stage.ANIMATING, Stage.DECODING, Stage.POSTPROCESSING, Stage.ENCODING)
]
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
WARMUP_STEPS = 2
SKIPPED = "skipped: time budget"
# diffusers' defaults; `warmup=False` everywhere: the benchmark warms up itself, through render_clip
STOCK = SpeedSettings(
    compile="off",
    channels_last=False,
    cudnn_benchmark=False,
    decode_chunk_size=None,  # the whole clip in one decode call, as the pipeline does by default
    warmup=False,
)
OPTIMISED = SpeedSettings(warmup=False)
STOCK_DTYPES = {"stock-bf16": "bf16", "stock-fp32": "fp32"}
VARIANTS: dict[str, SpeedSettings] = {
    "stock-bf16": STOCK,
    "stock-fp32": STOCK,
    "optimised": OPTIMISED,
    "optimised+interval": dataclasses.replace(OPTIMISED, guidance_until=0.6),
    "optimised+fp8": dataclasses.replace(OPTIMISED, quantize="fp8-dynamic"),
    "fast": dataclasses.replace(OPTIMISED, guidance_until=0.6, quantize="fp8-dynamic"),
    "optimised+cache": dataclasses.replace(OPTIMISED, step_cache="first-block:0.05"),
}


# ---- real-size architectures (random weights) -------------------------------------------------------------
def _words() -> Any:
    from bench.tiny_pipelines import WORDS, word_tokenizer

    return word_tokenizer(WORDS)  # prompts only need valid ids; the encoder has its real vocabulary size


def _scheduler(family: str) -> Any:
    import diffusers

    name, config = SCHEDULERS[family]
    return getattr(diffusers, name)(**config)


def _clip_vit_h(with_projection: bool, shape: Shape) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=16,
        patch_size=shape.image_patch,
        image_size=shape.image_size,
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
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor

    shape = PRODUCTION_SHAPES["svd"]
    scheduler = _scheduler("svd")
    with modules():
        vae = AutoencoderKLTemporalDecoder(  # four blocks, three 2× steps: shape.vae_scale 8
            block_out_channels=[128, 256, 512, 512],
            layers_per_block=2,
            down_block_types=["DownEncoderBlock2D"] * 4,
            latent_channels=shape.latent_channels,
        )
        image_encoder = _clip_vit_h(True, shape)
        unet = UNetSpatioTemporalConditionModel(
            in_channels=shape.denoiser_in_channels,
            out_channels=shape.latent_channels,
            num_frames=FAMILIES["svd"].frames,
        )
    return StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(),
    )


def build_wan21(modules: Callable[[], Any] = nullcontext) -> Any:
    """Wan 2.1 I2V 14B 480p: UMT5-XXL, CLIP ViT-H/14, 40-layer 5120-wide DiT, Wan VAE."""
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor

    shape = PRODUCTION_SHAPES["wan2.1"]
    scheduler = _scheduler("wan2.1")
    tokenizer = _words()
    with modules():
        transformer = WanTransformer3DModel(
            patch_size=shape.patch,
            num_attention_heads=40,
            attention_head_dim=128,
            in_channels=shape.denoiser_in_channels,
            out_channels=shape.latent_channels,
            text_dim=4096,
            freq_dim=256,
            ffn_dim=13824,
            num_layers=40,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
            image_dim=1280,
            added_kv_proj_dim=5120,
            rope_max_seq_len=shape.rope_max_seq_len,
        )
        text_encoder, image_encoder = _t5_xxl(umt5=True), _clip_vit_h(False, shape)
        vae = AutoencoderKLWan(z_dim=shape.latent_channels)  # 8×, 4× in time
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
    from diffusers import AutoencoderKLLTXVideo, LTXImageToVideoPipeline, LTXVideoTransformer3DModel

    shape = PRODUCTION_SHAPES["ltx"]
    scheduler = _scheduler("ltx")
    tokenizer = _words()
    with modules():
        # 4×4 patches, then three 2× steps in space and time: 32×, 8× in time
        vae = AutoencoderKLLTXVideo(latent_channels=shape.latent_channels)
        text_encoder = _t5_xxl(umt5=False)
        transformer = LTXVideoTransformer3DModel(
            in_channels=shape.denoiser_in_channels,
            out_channels=shape.latent_channels,
            patch_size=shape.patch[1],
            patch_size_t=shape.patch[0],
        )
    return LTXImageToVideoPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer
    )


def build_cogvideox(modules: Callable[[], Any] = nullcontext) -> Any:
    """CogVideoX-5B I2V: T5-XXL, 42-layer expert DiT with learned positions, CogVideoX VAE."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXImageToVideoPipeline, CogVideoXTransformer3DModel

    fam, shape = FAMILIES["cogvideox"], PRODUCTION_SHAPES["cogvideox"]
    _, latent_h, latent_w = shape.latent_grid(fam.size, fam.frames)
    tokenizer = _words()
    with modules():
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=48,
            attention_head_dim=64,
            in_channels=shape.denoiser_in_channels,
            out_channels=shape.latent_channels,
            num_layers=42,
            text_embed_dim=4096,
            time_embed_dim=512,
            sample_width=latent_w,  # learned positions for the production size and frames
            sample_height=latent_h,
            sample_frames=fam.frames,
            patch_size=shape.patch[1],
            temporal_compression_ratio=shape.vae_scale_t,
            max_text_seq_length=shape.text_tokens,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=True,
        )
        text_encoder = _t5_xxl(umt5=False)
        vae = AutoencoderKLCogVideoX(
            latent_channels=shape.latent_channels, temporal_compression_ratio=shape.vae_scale_t
        )
    scheduler = _scheduler("cogvideox")
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
    """The tiny pipelines the tests also use, saved and loaded back the way the worker loads a folder."""
    from diffusers import DiffusionPipeline

    import bench.tiny_pipelines as tiny

    builder = {"svd": tiny.build_tiny_svd, "wan2.1": tiny.build_tiny_wan}[family]
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
    """A progress callback that records the seconds and peak GPU memory of each stage it saw end, so a run
    that fails keeps what it measured before (the denoising loop, when the decode runs out of memory)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.current: str | None = None
        self.started = 0.0
        self.stage_s: dict[str, float] = {}
        self.peak_gb: dict[str, float] = {}

    def _close_stage(self) -> None:
        if self.current is None:
            return
        _sync(self.device)
        self.stage_s[self.current] = self.stage_s.get(self.current, 0.0) + time.perf_counter() - self.started
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / GB
            self.peak_gb[self.current] = max(self.peak_gb.get(self.current, 0.0), peak)
            torch.cuda.reset_peak_memory_stats(self.device)

    def __call__(self, stage: Stage, fraction: float, detail: str = "") -> None:
        if stage.value != self.current:
            self._close_stage()
            self.current = stage.value
            self.started = time.perf_counter()

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
    warm_s: float = 0.0
    total_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)
    peak_gb: dict[str, float] = field(default_factory=dict)
    denoiser_calls: int = 0
    denoiser_tflop: float = 0.0
    denoiser_tflops: float = 0.0
    mfu: float = 0.0
    error: str | None = None
    runs_total_s: list[float] = field(default_factory=list)
    build_s: float = 0.0
    row_s: float = 0.0  # the whole row, building and FLOP counting included: what --budget-s spends
    estimate_s: float | None = None  # its estimate before it started (calibrates later estimates)
    start_gb: float = 0.0  # GPU memory still allocated when the row started (left over by earlier rows)

    @property
    def measured(self) -> bool:
        return self.error is None

    @property
    def failed(self) -> bool:
        return self.error is not None and not self.error.startswith(("n/a", SKIPPED))


def error_text(e: BaseException) -> str:
    """The exception's type and the first line of its message, fit for one table cell."""
    lines = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
    return text[:300].replace("|", "/")


# ---- how long a row takes, before it runs (--budget-s) -----------------------------------------------------
FP32_RATE = 0.08  # of the bf16 peak: fp32 matmuls and attention run without tensor cores (67 of 990 TFLOP/s)
FP8_GAIN = 1.3  # fp8 Linears: up to 2× on matmuls, less on the whole denoiser
COUNT_S = 10  # the FLOP count on fake tensors, once per family and shape
TINY_ROW_S = 3.0


def estimate_row_s(
    family: str,
    variant: str,
    dtype: str,
    shape: tuple[tuple[int, int], int, int],
    args: argparse.Namespace,
    device: torch.device,
    peak_tflops: float,
    counted: bool,
) -> float:
    """Seconds the row will take: build + warm-up (compile, 2 steps, one clip's other stages) + timed runs."""
    if args.tiny:
        return TINY_ROW_S
    prior, fam, opts = PRIORS[family], FAMILIES[family], VARIANTS[variant]
    (w, h), frames, steps = shape
    scale = w * h * frames / (fam.size[0] * fam.size[1] * fam.frames)
    guided = guided_steps(opts.guidance_until, steps)
    compiled = device.type == "cuda" and opts.compile != "off"
    if dtype == "fp32":
        rate, slower = FP32_RATE * peak_tflops, 3.0
    else:
        rate, slower = (MFU_COMPILED if compiled else MFU_EAGER) * peak_tflops, 1.0
        rate *= FP8_GAIN if opts.quantize == "fp8-dynamic" else 1.0
    step_s = prior.call_tflop * scale * (2 * guided + steps - guided) / steps / rate
    other_s = prior.other_s * scale * slower
    # a guidance interval on a batched family compiles a second graph, for the conditional-only batch
    graphs = 1.5 if guided < steps and fam.guidance_batched else 1.0
    warm_s = (prior.compile_s * graphs if compiled else 0.0) + WARMUP_STEPS * step_s + other_s
    run_s = steps * step_s + other_s
    return prior.build_s * slower**0.5 + warm_s + args.repeats * run_s + (0.0 if counted else COUNT_S)


class Budget:
    """Starts a row only if it should end inside the budget; learns from the rows measured so far."""

    def __init__(self, seconds: float | None, history: list[Result]) -> None:
        self.seconds = seconds
        self.ratios = [r.row_s / r.estimate_s for r in history if r.measured and r.estimate_s]

    @property
    def correction(self) -> float:
        """Measured over estimated seconds, on average over the finished rows."""
        return statistics.mean(self.ratios) if self.ratios else 1.0

    def left_s(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - (time.monotonic() - STARTED)

    def learn(self, result: Result) -> None:
        if result.measured and result.estimate_s:
            self.ratios.append(result.row_s / result.estimate_s)


# ---- one row ---------------------------------------------------------------------------------------------
def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def row_shape(family: str, args: argparse.Namespace) -> tuple[tuple[int, int], int, int]:
    """(size, frames, steps) of a row: the options, else the family's defaults (tiny ones with --tiny)."""
    fam = FAMILIES[family]
    tiny = (64, 64), (8 if family == "svd" else 9), 4
    defaults = tiny if args.tiny else (fam.size, fam.frames, fam.steps)
    return args.size or defaults[0], args.frames or defaults[1], args.steps or defaults[2]


def variant_dtype(variant: str, args: argparse.Namespace, device: torch.device) -> str:
    if variant in STOCK_DTYPES:
        return STOCK_DTYPES[variant]
    if args.dtype != "auto":
        return args.dtype
    return "bf16" if device.type == "cuda" else "fp32"


@contextmanager
def both_batches_warmed(animator: DiffusionAnimator) -> Iterator[None]:
    """With a guidance interval, 2 warm-up steps at guidance_until=0.6 would both be guided; warm one guided
    and one conditional-only step instead (as the animator's own warm-up does), so that a compiled denoiser
    has met both batch sizes before the timed run."""
    speed = animator.speed
    if speed.guidance_until < 1:
        animator.speed = dataclasses.replace(speed, guidance_until=0.5)
    try:
        yield
    finally:
        animator.speed = speed


def release(device: torch.device) -> None:
    """Free the finished row's GPU memory, so that the next row's peaks are its own."""
    try:
        torch._dynamo.reset()  # compiled graphs keep their module's weights alive, and its recompile budget
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    except Exception as e:  # e.g. a CUDA error that broke the context: the next rows will report it
        log(f"cleaning up after the row failed: {error_text(e)}")


def run_variant(
    family: str,
    variant: str,
    dtype: str,
    shape: tuple[tuple[int, int], int, int],
    args: argparse.Namespace,
    device: torch.device,
    peak_tflops: float,
    flop_counts: dict[tuple, float],
) -> Result:
    """Build, warm up and time one variant; any exception becomes the row's error."""
    size, frames, steps = shape
    result = Result(family, variant, dtype, f"{size[0]}x{size[1]}", frames, steps)
    if VARIANTS[variant].step_cache and family == "svd":
        result.error = "n/a: the step cache needs a transformer denoiser; SVD has a UNet"
        return result
    request = AnimationRequest(seed=0, size=size, frames=frames, steps=steps, motion="look left and smile")
    warm_request = dataclasses.replace(request, steps=WARMUP_STEPS)
    tag = f"[{family}/{variant}]"
    t_row = time.perf_counter()
    if device.type == "cuda":
        result.start_gb = torch.cuda.memory_allocated(device) / GB
        if result.start_gb > 0.5:
            log(f"{tag} {result.start_gb:.1f} GB still allocated by earlier rows: peaks include it")
    pipe = animator = partial = recorder = None
    runs: list[tuple] = []
    try:
        torch_dtype = TORCH_DTYPES[dtype]
        build = build_tiny if args.tiny else (lambda f, d, t: build_on(BUILDERS[f], d, t))
        pipe = build(family, device, torch_dtype)
        if variant not in STOCK_DTYPES and torch_dtype != torch.float32:
            # as the production loader does: the components the family's docs keep in fp32
            for name in getattr(FAMILIES[family], "full_precision", ()):
                getattr(pipe, name).to(torch.float32)
        result.build_s = time.perf_counter() - t_row
        log(f"{tag} built {dtype} in {result.build_s:.1f} s")
        animator = DiffusionAnimator.from_pipeline(
            pipe, family=family, device=str(device), speed=VARIANTS[variant]
        )
        photo = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
        t0 = time.perf_counter()
        animator.setup()
        warm_meter = StageMeter(device)
        try:
            with both_batches_warmed(animator):
                render_clip(animator, photo, warm_request, warm_meter)  # kernels chosen, graphs compiled
        except Exception as e:
            if Stage.ANIMATING.value not in warm_meter.stage_s:
                raise
            # Failed after its denoising loop (a whole-clip decode out of memory, say): the denoiser is
            # warm, and the timed run can still measure its loop even if it fails the same way.
            log(f"{tag} warm-up failed after denoising ({error_text(e)}); timing a run anyway")
        result.warm_s = time.perf_counter() - t0
        log(f"{tag} warmed up in {result.warm_s:.1f} s")
        for _ in range(args.repeats):
            recorder = CallRecorder(denoisers(animator.pipe))
            meter = StageMeter(device)
            if device.type == "cuda":
                gc.collect()  # what a failed warm-up left behind, so it is not in this run's peaks
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            try:
                clip = render_clip(animator, photo, request, meter)
            except Exception:
                result.stage_s, result.peak_gb, partial = meter.stage_s, meter.peak_gb, recorder
                raise
            finally:
                recorder.close()
            total = time.perf_counter() - t0
            meter.finish()
            runs.append((total, clip.stage_seconds, meter.peak_gb, recorder))
        if args.save_clips is not None and variant == "optimised":  # for bench/clip_check.py --clips
            args.save_clips.mkdir(parents=True, exist_ok=True)
            (args.save_clips / f"{family}-{variant}.mp4").write_bytes(clip.mp4)
        total, stage_s, peak_gb, recorder = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        result.runs_total_s = [round(r[0], 3) for r in runs]
        result.total_s, result.stage_s, result.peak_gb = total, stage_s, peak_gb
        rate_denoiser(result, recorder, (family, size, frames), flop_counts, peak_tflops)
    except UnsupportedDevice as e:  # fp8 on a device without float8 matmuls
        result.error = f"n/a: {str(e).split(';')[0]}"
    except Exception as e:
        result.error = error_text(e)
        log(f"{tag} failed:\n{traceback.format_exc()}")
        if partial is not None:  # the stages the failed timed run finished still count
            try:
                rate_denoiser(result, partial, (family, size, frames), flop_counts, peak_tflops)
            except Exception as count_error:
                log(f"{tag} no FLOP count for the failed run: {error_text(count_error)}")
    finally:
        pipe = animator = partial = recorder = None  # recorders keep the first call's GPU inputs
        runs.clear()
        release(device)
    result.row_s = time.perf_counter() - t_row
    return result


def rate_denoiser(
    result: Result, recorder: CallRecorder, shape_key: tuple, flop_counts: dict[tuple, float], peak: float
) -> None:
    """The denoiser's FLOPs, TFLOP/s and MFU over the animating stage of `result`, if it has one."""
    result.denoiser_calls = recorder.calls
    animating = result.stage_s.get(Stage.ANIMATING.value)
    if recorder.first is None or not animating:
        return
    # the same model and inputs' shapes give the same count: once per family, shape and batch
    key = (*shape_key, recorder.batches[0])
    if key not in flop_counts:
        flop_counts[key] = count_flops(*recorder.first)
    result.denoiser_tflop = recorder.batch_units() * flop_counts[key] / 1e12
    result.denoiser_tflops = result.denoiser_tflop / animating
    result.mfu = result.denoiser_tflops / peak


# ---- output ------------------------------------------------------------------------------------------------
HEAD = [
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


def table_head() -> str:
    return "| " + " | ".join(HEAD) + " |\n|" + "---|" * len(HEAD)


def table_row(r: Result) -> str:
    shape = f"{r.size}×{r.frames}×{r.steps}"
    if r.error and not r.stage_s:
        return f"| {r.family} | {r.variant} | {r.dtype} | {shape} | {r.error} |"
    # a failed run shows the stages it finished, and its error where the total would be
    peaks = "/".join(f"{r.peak_gb[s]:.1f}" if s in r.peak_gb else "–" for s in STAGES) if r.peak_gb else "n/a"
    cells = [
        r.family,
        r.variant,
        r.dtype,
        shape,
        f"{r.warm_s:.1f}",
        *[f"{r.stage_s[s]:.2f}" if s in r.stage_s else "–" for s in STAGES],
        r.error or f"{r.total_s:.2f}",
        peaks,
        f"{r.denoiser_tflop:.3g}",
        f"{r.denoiser_tflops:.3g}",
        f"{100 * r.mfu:.0f}%",
    ]
    return "| " + " | ".join(cells) + " |"


def speedups(results: list[Result]) -> list[str]:
    """Each variant's speed-up over stock-bf16 and over stock-fp32, end to end and in denoising."""
    lines, animating = [], Stage.ANIMATING.value
    for fam in dict.fromkeys(r.family for r in results):
        # rows that failed after their denoising loop still compare in denoising
        by = {r.variant: r for r in results if r.family == fam and animating in r.stage_s}
        bases = [by[b] for b in STOCK_DTYPES if b in by]
        for v, r in by.items():
            for s in bases:
                if s.variant == v or v == "stock-fp32":
                    continue
                anim = s.stage_s[animating] / max(r.stage_s[animating], 1e-9)
                end = f"{s.total_s / r.total_s:.2f}×" if s.measured and r.measured else "n/a"
                lines.append(f"speed-up {fam} {v} vs {s.variant}: {end} end to end, {anim:.2f}× in denoising")
    return lines


def device_line(meta: dict[str, Any]) -> str:
    return (
        f"Device: {meta['device']}; measured {meta['peak_dtype']} matmul peak {meta['peak_tflops']:.3g} "
        f"TFLOP/s; torch {meta['torch']}, diffusers {meta['diffusers']}, torchao {meta['torchao']}"
    )


def print_results(meta: dict[str, Any], results: list[Result]) -> None:
    print(f"\n{device_line(meta)}\n{table_head()}")
    for r in results:
        print(table_row(r))
    for line in speedups(results):
        print(line)
    print(flush=True)


def write_json(path: Path, meta: dict[str, Any], results: list[Result]) -> None:
    """Rewrite the whole file atomically: a run killed mid-write leaves the previous version."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**meta, "rows": [asdict(r) for r in results]}, indent=2))
    os.replace(tmp, path)


def read_json(path: Path) -> tuple[dict[str, Any], list[Result]]:
    data = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(Result)}
    rows = [Result(**{k: v for k, v in row.items() if k in names}) for row in data.pop("rows")]
    return data, rows


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def report(paths: list[Path]) -> int:
    """The tables of earlier runs (the plan's files), one per device, with the speed-ups across files."""
    by_device: dict[str, tuple[dict[str, Any], list[Result]]] = {}
    for path in paths:
        if not path.exists():
            print(f"{path}: missing")
            continue
        meta, rows = read_json(path)  # one table per GPU: each process measured its own peak
        by_device.setdefault(meta["device"], (meta, []))[1].extend(rows)
    for meta, rows in by_device.values():
        print_results(meta, rows)
    return 0


# ---- real-size configs on fake tensors ---------------------------------------------------------------------
def denoiser_inputs(family: str) -> tuple[tuple, dict[str, Any]]:
    """One denoiser call's inputs at the family's default size and frames, batch 1 (only shapes matter).
    The grids and lengths come from the family's PRODUCTION_SHAPES entry; the widths are the models'."""
    fam, shape, z = FAMILIES[family], PRODUCTION_SHAPES[family], torch.zeros
    t, hh, ww = shape.latent_grid(fam.size, fam.frames)
    channels = shape.denoiser_in_channels
    if family == "svd":  # (frames, channels, h, w) latents; one CLIP image embedding; 3 added time ids
        return (z(1, t, channels, hh, ww), torch.tensor(1.0), z(1, 1, 1024), z(1, 3)), {}
    if family == "wan2.1":  # (channels, frames, h, w) latents; text and CLIP image tokens
        return (), {
            "hidden_states": z(1, channels, t, hh, ww),
            "timestep": z(1),
            "encoder_hidden_states": z(1, shape.text_tokens, 4096),
            "encoder_hidden_states_image": z(1, shape.image_tokens, 1280),
        }
    if family == "ltx":  # packed latents: one token per latent pixel (1×1×1 patches)
        tokens = t * hh * ww
        return (), {
            "hidden_states": z(1, tokens, channels),
            "encoder_hidden_states": z(1, shape.text_tokens, 4096),
            "timestep": z(1, tokens),
            "encoder_attention_mask": torch.ones(1, shape.text_tokens),
            "num_frames": t,
            "height": hh,
            "width": ww,
            "rope_interpolation_scale": (shape.vae_scale_t / fam.fps, shape.vae_scale, shape.vae_scale),
        }
    if family == "cogvideox":  # (frames, channels, h, w) latents in 2×2 patches; RoPE per patch
        n = t * (hh // shape.patch[1]) * (ww // shape.patch[2])
        return (), {
            "hidden_states": z(1, t, channels, hh, ww),
            "encoder_hidden_states": z(1, shape.text_tokens, 4096),
            "timestep": torch.zeros(1, dtype=torch.long),
            "image_rotary_emb": (z(n, 64), z(n, 64)),
        }
    raise ValueError(f"no denoiser inputs written for {family}")


def check_configs() -> None:
    """Build every real-size pipeline on fake tensors (no memory, no GPU): parameter counts, and the FLOPs
    of one denoiser call at the family's default shape (the `call_tflop` of PRIORS)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    for family, builder in BUILDERS.items():
        pipe = builder(FakeTensorMode)
        parts = {
            n: sum(p.numel() for p in m.parameters()) / 1e9
            for n, m in pipe.components.items()
            if isinstance(m, torch.nn.Module)
        }
        print(f"{family}: " + ", ".join(f"{n} {v:.3f} B" for n, v in parts.items()), flush=True)
        fam = FAMILIES[family]
        try:
            args, kwargs = denoiser_inputs(family)
            tflop = count_flops(denoisers(pipe)[0], args, kwargs) / 1e12
        except Exception as e:
            print(f"{family}: FLOP count failed: {error_text(e)}", flush=True)
            continue
        print(
            f"{family}: one denoiser call, batch 1, {fam.frames}×{fam.size[1]}×{fam.size[0]}: "
            f"{tflop:.1f} TFLOP; a guided clip of {fam.steps} steps: {fam.steps * tflop / 500:.1f} PFLOP",
            flush=True,
        )


def quiet_progress_bars() -> None:
    """No loading and saving bars in the logs (the tiny models go through a folder)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", default="svd", help=f"comma list of {', '.join(BUILDERS)} (svd-xt = svd)")
    parser.add_argument(
        "--variants", default="optimised,stock-bf16,stock-fp32", help=f"comma list of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--size", type=lambda s: tuple(int(v) for v in s.lower().split("x")), default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *TORCH_DTYPES],
        help="weights of the non-stock variants (auto: bf16 on CUDA, fp32 elsewhere)",
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (smoke test of this script)")
    parser.add_argument("--check-configs", action="store_true", help="real-size configs on fake tensors, CPU")
    parser.add_argument("--json", type=Path, help="write the results here, rewritten after every row")
    parser.add_argument(
        "--save-clips",
        type=Path,
        help="write each optimised row's last clip here as FAMILY-optimised.mp4 (bench/clip_check.py --clips "
        "measures them later)",
    )
    parser.add_argument(
        "--budget-s", type=float, default=None, help="start no row that would end later than this after start"
    )
    parser.add_argument(
        "--calibrate", type=Path, nargs="*", default=[], help="earlier --json files: correct the estimates"
    )
    parser.add_argument("--report", type=Path, nargs="+", help="print the tables of these --json files")
    args = parser.parse_args(argv)
    if args.check_configs:
        check_configs()
        return 0
    if args.report:
        return report(args.report)
    quiet_progress_bars()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device; use --tiny --device cpu for a smoke run")
    families = [ALIASES.get(f, f) for f in args.family.split(",")]
    variants = args.variants.split(",")
    unknown = [f for f in families if f not in BUILDERS] + [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown family or variant: {', '.join(unknown)}")
    if args.tiny:
        families = [f for f in families if f in ("svd", "wan2.1")] or ["svd"]
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak_tflops(device, peak_dtype)
    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "peak_tflops": peak,
        "peak_dtype": str(peak_dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "diffusers": version("diffusers"),
        "torchao": version("torchao"),
        "argv": sys.argv[1:] if argv is None else argv,
    }
    print(device_line(meta), flush=True)
    if args.tiny:
        print("tiny models: this checks that the script works; its timings are not a benchmark", flush=True)
    print(table_head(), flush=True)
    history = [r for p in args.calibrate if p.exists() for r in read_json(p)[1]]
    budget = Budget(args.budget_s, history)
    results: list[Result] = []
    flop_counts: dict[tuple, float] = {}
    for family in families:
        shape = row_shape(family, args)
        for variant in variants:
            dtype = variant_dtype(variant, args, device)
            counted = any(k[:3] == (family, *shape[:2]) for k in flop_counts)
            estimate = estimate_row_s(family, variant, dtype, shape, args, device, peak, counted)
            expected, left = estimate * budget.correction, budget.left_s()
            tag = f"[{family}/{variant}]"
            if expected > left:
                (w, h), frames, steps = shape
                result = Result(family, variant, dtype, f"{w}x{h}", frames, steps, error=SKIPPED)
                log(f"{tag} skipped: expected {expected:.0f} s, {left:.0f} s of the budget left")
            else:
                left_text = f", {left:.0f} s of the budget left" if args.budget_s is not None else ""
                log(f"{tag} starting: expected {expected:.0f} s{left_text}")
                result = run_variant(family, variant, dtype, shape, args, device, peak, flop_counts)
                budget.learn(dataclasses.replace(result, estimate_s=estimate))
            result.estimate_s = estimate
            results.append(result)
            print(table_row(result), flush=True)
            if args.json:
                write_json(args.json, meta, results)
    print_results(meta, results)
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
