"""Speed settings in combination, per family: each combination either runs or is refused when the animator
is built, with the reason. Plus what a run leaves behind (cache and hook state), the prompt a
text-conditioned family gets, and the natural playback speed. Tiny random-weight pipelines on a CPU."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from bench.tiny_pipelines import build_tiny_cogvideox, build_tiny_ltx, build_tiny_svd, build_tiny_wan
from models.auto_motion import plan_motion
from models.base import AnimationRequest, Canceled, Stage
from models.diffusion.animator import (
    DiffusionAnimator,
    describe_motion,
    length_note,
    motion_prompt,
    natural_length,
    plan_for,
)
from models.diffusion.families import FAMILIES, PRODUCTION_SHAPES
from models.diffusion.speed import SpeedSettings, balanced_chunk, decode_chunk, denoisers
from models.registry import create_animator

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "svd": build_tiny_svd,
    "wan2.1": build_tiny_wan,
    "ltx": build_tiny_ltx,
    "cogvideox": build_tiny_cogvideox,
}

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("settings")
    return {name: build(root / name) for name, build in BUILDERS.items()}


# (family, options, None if it runs, else a pattern of the refusal). Compile combinations are run in their
# own tests below (compiling on a CPU takes tens of seconds).
COMBINATIONS: list[tuple[str, dict[str, Any], str | None]] = [
    ("svd", {}, None),
    ("svd", {"decode_chunk_size": 3}, None),
    ("svd", {"decode_chunk_size": None}, None),
    ("svd", {"guidance_until": 0.5, "channels_last": False}, None),
    ("svd", {"quantize": "int8-weight"}, None),
    ("svd", {"step_cache": "first-block:0.1"}, "needs a transformer denoiser"),
    ("svd", {"attention_backend": "native"}, "denoiser does not use"),
    ("svd", {"vae_tiling": True}, "VAE cannot tile"),
    ("svd", {"offload_text_encoder": True}, "no text encoder"),
    ("svd", {"decode_chunk_size": 0}, "at least 1"),
    ("wan2.1", {}, None),
    ("wan2.1", {"attention_backend": "native"}, None),
    ("wan2.1", {"vae_tiling": True}, None),
    ("wan2.1", {"step_cache": "first-block:0.1", "guidance_until": 0.5}, None),
    ("wan2.1", {"offload_text_encoder": True}, None),  # a CPU keeps everything in CPU memory anyway
    ("wan2.1", {"cpu_offload": "model"}, None),
    ("wan2.1", {"decode_chunk_size": 4}, "SVD's frame-chunked decoder only"),
    ("wan2.1", {"step_cache": "first-block:0.1", "compile": "full"}, "cannot trace the cache's hooks"),
    ("wan2.1", {"offload_text_encoder": True, "cpu_offload": "model"}, "part of cpu_offload"),
    ("wan2.1", {"quantize": "int8-weight", "cpu_offload": "sequential"}, "sequential"),
    ("ltx", {"attention_backend": "native", "vae_tiling": True}, None),
    ("ltx", {"step_cache": "first-block:0.1", "guidance_until": 0.5}, "cannot be combined"),
    ("cogvideox", {"guidance_until": 0.5, "vae_tiling": True}, None),
    ("cogvideox", {"attention_backend": "native"}, "denoiser does not use"),
    ("cogvideox", {"compile": "off", "compile_mode": "max-autotune"}, "compile_mode needs compile"),
    ("cogvideox", {"warmup": "sometimes"}, "true, false or 'auto'"),
    ("cogvideox", {"speed": "ludicrous"}, "unknown animator option"),
]


@pytest.mark.parametrize(
    ("family", "options", "refusal"),
    COMBINATIONS,
    ids=[f"{f}-{'+'.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}" for f, o, _ in COMBINATIONS],
)
def test_each_combination_runs_or_is_refused_when_built(
    family: str, options: dict[str, Any], refusal: str | None, folders: dict[str, Path], portrait: Image.Image
) -> None:
    # the flat options of VIVIFY_ANIMATOR_OPTIONS, as the worker passes them
    if refusal is not None:
        with pytest.raises(ValueError, match=refusal):
            create_animator("diffusion", model=str(folders[family]), **options)
        return
    animator = create_animator("diffusion", model=str(folders[family]), **options)
    frames = animator.animate(portrait, AnimationRequest(seed=1, steps=2)).frames
    assert frames.ndim == 4 and frames.shape[1:] == (64, 64, 3)
    assert frames.std() > 1.0  # a picture, not a flat field


def test_flat_options_split_into_constructor_keywords_and_speed_settings(folders: dict[str, Path]) -> None:
    animator = create_animator(
        "diffusion", model=str(folders["svd"]), color_match=0.5, guidance_until=0.5, warmup=False
    )
    assert isinstance(animator, DiffusionAnimator) and animator.color_match == 0.5
    assert animator.speed == SpeedSettings(guidance_until=0.5, warmup=False)
    assert DiffusionAnimator(model=str(folders["svd"])).speed == SpeedSettings()


def test_attention_backend_acts_on_this_pipeline_only(folders: dict[str, Path]) -> None:
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    before = _AttentionBackendRegistry._active_backend
    animator = DiffusionAnimator(
        model=str(folders["wan2.1"]), speed=SpeedSettings(attention_backend="_native_math")
    )
    animator.setup()
    backends = {
        getattr(m.processor, "_attention_backend", None)
        for m in animator.pipe.transformer.modules()
        if hasattr(m, "processor")
    }
    assert {str(b.value) if b is not None else None for b in backends} == {"_native_math"}
    assert _AttentionBackendRegistry._active_backend == before  # the process-wide default is untouched


class _Boom(RuntimeError):
    pass


def _fail_at_step(at: str, error: BaseException) -> Callable[[Stage, float, str], None]:
    def progress(stage: Stage, fraction: float, detail: str = "") -> None:
        if stage is Stage.ANIMATING and detail == at:
            raise error

    return progress


@pytest.mark.parametrize(
    "error",
    [Canceled("canceled"), _Boom("a failing step"), torch.OutOfMemoryError("CUDA out of memory (simulated)")],
    ids=["cancel", "error", "out-of-memory"],
)
def test_the_next_job_of_another_shape_succeeds_after_a_run_that_stopped(
    error: BaseException, folders: dict[str, Path], portrait: Image.Image
) -> None:
    """With the step cache on, a run that stops mid-denoise leaves cache state behind that diffusers only
    clears at the end of a finished call; the animator clears it, so another shape runs next."""
    animator = DiffusionAnimator(
        model=str(folders["wan2.1"]), speed=SpeedSettings(step_cache="first-block:0.2")
    )
    with pytest.raises(type(error)):
        animator.animate(portrait, AnimationRequest(seed=2, steps=4), _fail_at_step("1/4", error))
    # another token count (96 against 48): stale cache state would not even broadcast
    frames = animator.animate(portrait, AnimationRequest(seed=2, steps=3, size=(128, 64), frames=9)).frames
    assert frames.shape == (9, 64, 128, 3)
    # and the first shape again, reproducibly
    a = animator.animate(portrait, AnimationRequest(seed=3, steps=3)).frames
    b = animator.animate(portrait, AnimationRequest(seed=3, steps=3)).frames
    assert np.array_equal(a, b)


def test_step_cache_with_compile_runs_and_recompiles_nothing(
    folders: dict[str, Path], portrait: Image.Image
) -> None:
    """The blocks are compiled and the cache hooks stay eager around them (Dynamo cannot trace them);
    after the warm-up a job compiles nothing and matches the eager run with the same cache."""
    request = AnimationRequest(seed=4, steps=3)
    eager = DiffusionAnimator(model=str(folders["wan2.1"]), speed=SpeedSettings(step_cache="first-block:0.2"))
    compiled = DiffusionAnimator(
        model=str(folders["wan2.1"]),
        speed=SpeedSettings(step_cache="first-block:0.2", compile="blocks", warmup=True),
    )
    compiled.setup()
    with torch._dynamo.config.patch(error_on_recompile=True):
        out = compiled.animate(portrait, request).frames
    ref = eager.animate(portrait, request).frames
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 3


def test_the_text_encoder_waits_in_cpu_memory_between_prompts(
    folders: dict[str, Path], portrait: Image.Image
) -> None:
    """offload_text_encoder keeps the encoder off the GPU except while it encodes. On a CPU the move is a
    no-op, so this checks the placement and the hooks, and that the clip is the one without offload."""
    plain = DiffusionAnimator(model=str(folders["wan2.1"]))
    offload = DiffusionAnimator(model=str(folders["wan2.1"]), speed=SpeedSettings(offload_text_encoder=True))
    offload.setup()
    encoder = offload.pipe.text_encoder
    assert offload.speed.offloads_text_encoder(offload.family, torch.device("cuda"))
    assert not offload.speed.offloads_text_encoder(offload.family, torch.device("cpu"))
    request = AnimationRequest(seed=5, steps=2)
    assert np.array_equal(plain.animate(portrait, request).frames, offload.animate(portrait, request).frames)
    assert next(encoder.parameters()).device.type == "cpu"
    # Wan 2.2 A14B's table entry turns it on by itself on a GPU; smaller families keep the encoder there
    auto = SpeedSettings()
    assert auto.offloads_text_encoder(FAMILIES["wan2.2"], torch.device("cuda"))
    assert not auto.offloads_text_encoder(FAMILIES["wan2.1"], torch.device("cuda"))
    assert not SpeedSettings(cpu_offload="model").offloads_text_encoder(
        FAMILIES["wan2.2"], torch.device("cuda")
    )


def test_warm_up_only_on_cuda_unless_asked() -> None:
    assert SpeedSettings().warms_up(torch.device("cuda"))
    assert not SpeedSettings().warms_up(torch.device("cpu"))
    assert SpeedSettings(warmup=True).warms_up(torch.device("cpu"))
    assert not SpeedSettings(warmup=False).warms_up(torch.device("cuda"))


def test_warm_up_meets_each_orientation_the_worker_serves(folders: dict[str, Path]) -> None:
    calls: list[tuple[int, ...]] = []
    animator = DiffusionAnimator(model=str(folders["svd"]), speed=SpeedSettings(warmup=False))
    animator.setup()
    animator.family = dataclasses.replace(animator.family, size=(128, 64))
    animator.pipe.unet.register_forward_pre_hook(lambda _m, a: calls.append(tuple(a[0].shape)))
    animator._warm_up()
    # latents (batch, frames, channels, h/8, w/8): both orientations at the family's frame count, 2 steps
    assert sorted({c[1:] for c in calls}) == [(8, 8, 8, 16), (8, 8, 16, 8)]
    assert len(calls) == 4


def test_svd_decodes_the_whole_clip_or_balanced_chunks() -> None:
    assert balanced_chunk(25, 25) == 25
    assert balanced_chunk(25, 8) == 7  # 7/7/7/4, where a plain 8 gives 8/8/8/1
    assert balanced_chunk(25, 12) == 9  # 9/9/7
    assert balanced_chunk(25, 1) == 1
    cpu = torch.device("cpu")
    assert decode_chunk(SpeedSettings(), 25, (1024, 576), cpu) == 25  # auto: the whole clip off a GPU
    assert decode_chunk(SpeedSettings(decode_chunk_size=None), 25, (1024, 576), cpu) == 25
    assert decode_chunk(SpeedSettings(decode_chunk_size=8), 25, (1024, 576), cpu) == 8


def test_svd_pipeline_gets_one_decode_call_by_default(
    folders: dict[str, Path], portrait: Image.Image
) -> None:
    animator = DiffusionAnimator(model=str(folders["svd"]))
    animator.setup()
    decodes: list[int] = []
    animator.pipe.vae.decoder.register_forward_pre_hook(
        lambda _m, a, k: decodes.append(len(a[0])), with_kwargs=True
    )
    animator.animate(portrait, AnimationRequest(seed=1, steps=2))
    assert decodes == [8]  # the tiny folder's 8 frames in one call


def test_text_conditioned_families_get_the_motion_in_words(folders: dict[str, Path]) -> None:
    animator = DiffusionAnimator(model=str(folders["ltx"]))
    animator.setup()
    photo = Image.new("RGB", (64, 64))
    prompt = animator.call_kwargs(photo, (64, 64), 9, 2, 0, "look-around")["prompt"]
    assert "look-around" not in prompt and "turns the head and eyes to one side" in prompt
    assert (
        "look left and smile"
        in animator.call_kwargs(photo, (64, 64), 9, 2, 0, "look left and smile")["prompt"]
    )
    # The default, auto, is the plan for this photo in words (no face here: the planner's fallback).
    default = animator.call_kwargs(photo, (64, 64), 9, 2, 0, None)["prompt"]
    assert default.endswith(motion_prompt(None, plan_motion(photo, None, 0)))
    assert "auto" not in default.lower()
    assert animator.call_kwargs(photo, (64, 64), 9, 2, 0, "auto")["prompt"] == default
    assert motion_prompt("nod") == "Motion: two gentle nods."
    # Without a plan (text the planner does not understand) auto's own words still reach the model.
    assert describe_motion("auto, and dance") == "dance" and describe_motion(None) == describe_motion(
        "gentle"
    )
    assert plan_for(photo, "dance and laugh", 0) is None


@pytest.mark.parametrize(
    ("family", "kept", "seconds"),
    [("svd", 25, 25 / 7), ("wan2.1", 80, 5.0), ("ltx", 97, 97 / 24), ("cogvideox", 40, 5.0)],
)
def test_every_family_plays_at_its_natural_speed(family: str, kept: int, seconds: float) -> None:
    fam = FAMILIES[family]
    n, fps = natural_length(fam.frames, fam.fps)
    assert (n, fps) == (kept, fam.fps)  # trimmed, never sped up
    assert abs(n / fps - seconds) < 1e-9


@pytest.mark.parametrize(
    ("family", "grid", "tokens"),
    [
        ("svd", (25, 72, 128), 25 * 72 * 128),
        ("wan2.1", (21, 60, 104), 21 * 30 * 52),  # (1, 2, 2) patches
        ("ltx", (13, 16, 24), 13 * 16 * 24),
        ("cogvideox", (13, 60, 90), 13 * 30 * 45),
    ],
)
def test_production_shapes_give_the_real_latent_grids(
    family: str, grid: tuple[int, int, int], tokens: int
) -> None:
    """The table the benchmark's real-size models and the rehearsal's narrow ones are built from."""
    fam, shape = FAMILIES[family], PRODUCTION_SHAPES[family]
    assert shape.latent_grid(fam.size, fam.frames) == grid
    t, h, w = grid
    assert (t // shape.patch[0]) * (h // shape.patch[1]) * (w // shape.patch[2]) == tokens
    assert shape.image_tokens == (257 if family in ("svd", "wan2.1") else 0)  # CLIP ViT-H/14 at 224 px


def test_a_family_keeps_its_own_length_and_size_and_says_so() -> None:
    assert length_note(AnimationRequest(duration_s=4.0), 97 / 24, "ltx", (768, 512)) is None  # 4.04 s
    assert length_note(AnimationRequest(), 25 / 7, "svd", (1024, 576)) is None  # nothing asked
    note = length_note(AnimationRequest(duration_s=10.0, resolution="4k"), 5.0, "wan2.1", (832, 480))
    assert note == (
        "This model (wan2.1) makes clips of its own length and size: this one is 5.0 s long, not the 10 s "
        "asked for and 832x480, not 4K."
    )
    assert "not 4K" not in (
        length_note(AnimationRequest(resolution="4k", size=(832, 480)), 5.0, "x", (1, 1)) or ""
    )


def test_a_short_request_is_slowed_to_three_seconds() -> None:
    n, fps = natural_length(8, 7)
    assert n == 8 and abs(n / fps - 3.0) < 1e-9


def test_denoisers_are_found_for_every_family(folders: dict[str, Path]) -> None:
    for family, folder in folders.items():
        animator = DiffusionAnimator(model=str(folder))
        animator.setup()
        assert len(denoisers(animator.pipe)) == 1, family
