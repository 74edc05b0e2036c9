"""The guidance interval (`guidance_until`): guided early steps, conditional-only late steps, on tiny
random-weight pipelines of every family, on a CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.tiny_pipelines import build_tiny_cogvideox, build_tiny_ltx, build_tiny_svd, build_tiny_wan
from models.base import AnimationRequest
from models.diffusion.animator import DiffusionAnimator
from models.diffusion.guidance import conditional_half, guided_steps, latent_batch
from models.diffusion.speed import SpeedSettings, denoisers

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "svd": build_tiny_svd,
    "wan2.1": build_tiny_wan,
    "ltx": build_tiny_ltx,
    "ltx-condition": lambda p: build_tiny_ltx(p, condition=True),
    "cogvideox": build_tiny_cogvideox,
}
BATCHED = ["svd", "ltx", "ltx-condition", "cogvideox"]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("guidance")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def _run(animator: DiffusionAnimator, photo: Image.Image, steps: int) -> tuple[np.ndarray, list[int]]:
    """Frames, and the latent batch size of every denoiser call as the denoiser itself receives it."""
    animator.setup()
    batches: list[int] = []
    # registered after setup, so it runs after the interval's own pre-hook: it sees what forward gets
    handles = [
        m.register_forward_pre_hook(lambda _m, a, k: batches.append(latent_batch(a, k)), with_kwargs=True)
        for m in denoisers(animator.pipe)
    ]
    try:
        frames = animator.animate(photo, AnimationRequest(seed=4, steps=steps)).frames
    finally:
        for h in handles:
            h.remove()
    return frames, batches


def test_guided_steps_counts_from_the_first_step() -> None:
    assert guided_steps(1.0, 25) == 25
    assert guided_steps(0.6, 25) == 15
    assert guided_steps(0.5, 4) == 2
    assert guided_steps(0.01, 4) == 1  # never zero: the first step is always guided


@pytest.mark.parametrize("family", list(BUILDERS))
def test_late_steps_run_the_conditional_pass_only(
    family: str, folders: dict[str, Path], portrait: Image.Image
) -> None:
    stock = DiffusionAnimator(model=str(folders[family]), speed=SpeedSettings(warmup=False))
    interval = DiffusionAnimator(
        model=str(folders[family]), speed=SpeedSettings(guidance_until=0.5, warmup=False)
    )
    full, full_batches = _run(stock, portrait, steps=4)
    cut, cut_batches = _run(interval, portrait, steps=4)
    if family in BATCHED:  # one call per step on [uncond; cond], halved after step 2
        assert full_batches == [2, 2, 2, 2]
        assert cut_batches == [2, 2, 1, 1]
    else:  # Wan: a conditional and an unconditional call per guided step
        assert full_batches == [1] * 8
        assert cut_batches == [1] * 6
    assert full.shape == cut.shape
    assert np.abs(full.astype(int) - cut.astype(int)).mean() > 0.1  # guidance changed the late steps
    again, _ = _run(interval, portrait, steps=4)
    assert np.array_equal(cut, again)  # still reproducible under a seed


@pytest.mark.parametrize("family", BATCHED)
def test_conditional_half_is_exactly_the_conditional_prediction(
    family: str, folders: dict[str, Path], portrait: Image.Image
) -> None:
    """The cut inputs give what the guided call gives for its conditional half: every batched input was
    cut, and the right half of each."""
    animator = DiffusionAnimator(model=str(folders[family]), speed=SpeedSettings(warmup=False))
    animator.setup()
    module = denoisers(animator.pipe)[0]
    seen: list[tuple[tuple, dict]] = []
    handle = module.register_forward_pre_hook(
        lambda _m, a, k: seen.append((a, k)) if not seen else None, with_kwargs=True
    )
    try:
        animator.animate(portrait, AnimationRequest(seed=1, steps=1))
    finally:
        handle.remove()
    args, kwargs = seen[0]
    with torch.no_grad():
        full = module(*args, **kwargs)[0]
        cut_args, cut_kwargs = conditional_half(args, kwargs)
        half = module(*cut_args, **cut_kwargs)[0]
    n = full.shape[0]
    assert half.shape[0] == n // 2
    torch.testing.assert_close(half, full[n // 2 :], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(full[: n // 2], full[n // 2 :], atol=1e-3)  # the halves do differ


def test_warm_up_runs_both_batch_sizes(folders: dict[str, Path]) -> None:
    """So that a compiled denoiser meets both shapes before the first job."""
    animator = DiffusionAnimator(
        model=str(folders["svd"]), speed=SpeedSettings(guidance_until=0.5, warmup=False)
    )
    animator.setup()
    batches: list[int] = []
    animator.pipe.unet.register_forward_pre_hook(
        lambda _m, a, k: batches.append(latent_batch(a, k)), with_kwargs=True
    )
    animator._warm_up()  # what setup() runs when warmup=True
    assert batches == [2, 1]


def test_guidance_off_means_no_interval(folders: dict[str, Path], portrait: Image.Image) -> None:
    animator = DiffusionAnimator(
        model=str(folders["svd"]), speed=SpeedSettings(guidance=1.0, guidance_until=0.5, warmup=False)
    )
    _, batches = _run(animator, portrait, steps=3)
    assert batches == [1, 1, 1]


def test_invalid_guidance_interval_settings(folders: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"guidance_until must be in \(0, 1\]"):
        DiffusionAnimator(model=str(folders["svd"]), speed=SpeedSettings(guidance_until=0))
    with pytest.raises(ValueError, match="cannot be combined"):
        DiffusionAnimator(
            model=str(folders["ltx"]), speed=SpeedSettings(guidance_until=0.5, step_cache="first-block:0.1")
        )
    # Wan's separate calls keep separate caches: the combination is fine there
    DiffusionAnimator(
        model=str(folders["wan2.1"]), speed=SpeedSettings(guidance_until=0.5, step_cache="first-block:0.1")
    )
    with pytest.raises(RuntimeError, match="uncond; cond"):
        conditional_half((torch.zeros(3, 4),), {})


def test_compiled_denoiser_meets_every_shape_in_the_warm_up(
    folders: dict[str, Path], portrait: Image.Image
) -> None:
    """torch.compile (regional, as on a GPU) with a guidance interval: setup's warm-up compiles the guided
    and the conditional-only batch, so a job recompiles nothing, and the output is the eager one."""
    request = AnimationRequest(seed=3, steps=4)
    eager = DiffusionAnimator(
        model=str(folders["ltx"]), speed=SpeedSettings(guidance_until=0.5, compile="off", warmup=False)
    )
    compiled = DiffusionAnimator(
        model=str(folders["ltx"]), speed=SpeedSettings(guidance_until=0.5, compile="blocks", warmup=True)
    )
    compiled.setup()
    with torch._dynamo.config.patch(error_on_recompile=True):
        out = compiled.animate(portrait, request).frames
    ref = eager.animate(portrait, request).frames
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 3  # same clip, up to kernel rounding
