"""Every model family rehearsed at its production shape, on a CPU: the default size in each orientation the
family allows, its default frame count and native frame rate, through the whole product path.

The pipelines (tests/fixtures/rehearsal_pipelines.py) have random weights and narrow layers but the real
shapes: latent grids, token counts, positional-embedding bounds, text lengths, VAE compression. Each
folder is loaded the way the worker loads it and rendered with `render_clip`: fit → denoise (one step) →
decode → colour → frame-rate conversion to 24 fps → H.264. What a 64 px tiny pipeline cannot show, shows
here: a RoPE table too short for the grid, learned positions for another size, a post-processing step that
breaks at 832×480, a clip played at the wrong speed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import skimage.data
import torch
from PIL import Image

from models.base import AnimationRequest, Frames
from models.diffusion.animator import DiffusionAnimator
from models.diffusion.families import FOLDER_DEFAULTS_FILE
from models.diffusion.speed import denoisers
from models.registry import create_animator
from models.render import render_clip
from models.video import probe
from tests.fixtures.rehearsal_pipelines import BUILDERS

# Per family: the landscape default size; the frames the animator keeps and their frame rate, the
# family's native one (frames past 5 s are trimmed, not sped up); the frames of the 24 fps clip.
EXPECTED: dict[str, tuple[tuple[int, int], int, float, int]] = {
    "svd": ((1024, 576), 25, 7, 86),  # 25 frames at 7 fps: 3.57 s, round(25 · 24 / 7)
    "wan2.1": ((832, 480), 80, 16, 120),  # 81 at 16 fps: 80 kept, 5.0 s
    "ltx": ((768, 512), 97, 24, 97),  # 97 at 24 fps: 4.04 s, no conversion
    "cogvideox": ((720, 480), 40, 8, 120),  # 49 at 8 fps: 40 kept, 5.0 s
}
# Each case with the latents the denoiser must see (batch left out): SVD (frames, channels, h, w), Wan
# (channels, frames, h, w), LTX packed (tokens, channels), CogVideoX (frames, channels, h, w). CogVideoX
# takes 720×480 only (learned positions), so it has no portrait case.
CASES = [
    ("svd", "landscape", (25, 8, 72, 128)),
    ("svd", "portrait", (25, 8, 128, 72)),
    ("wan2.1", "landscape", (36, 21, 60, 104)),
    ("wan2.1", "portrait", (36, 21, 104, 60)),
    ("ltx", "landscape", (13 * 16 * 24, 128)),
    ("ltx", "portrait", (13 * 24 * 16, 128)),
    ("cogvideox", "landscape", (13, 8, 60, 90)),
]


@dataclass
class Rehearsal:
    folder: Path
    animator: DiffusionAnimator
    seconds: dict[str, float] = field(default_factory=dict)  # building the folder, loading it


@pytest.fixture(scope="module")
def rehearsals(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Rehearsal]:
    """Each family's folder, built once per module when a test first needs it, and loaded as the worker
    loads it (no warm-up: on a CPU that would be a second full clip)."""
    done: dict[str, Rehearsal] = {}

    def get(family: str) -> Rehearsal:
        if family not in done:
            t0 = time.perf_counter()
            folder = BUILDERS[family](tmp_path_factory.mktemp("rehearsal") / family)
            t1 = time.perf_counter()
            animator = create_animator("diffusion", model=str(folder), warmup=False)
            animator.setup()
            done[family] = Rehearsal(folder, animator, {"build": t1 - t0, "load": time.perf_counter() - t1})
        return done[family]

    return get


@pytest.fixture
def rehearsal(family: str, rehearsals: Callable[[str], Rehearsal]) -> Rehearsal:
    """The family's rehearsal; the first test of a family pays for building and loading in its setup."""
    return rehearsals(family)


@pytest.fixture(scope="module")
def photos(portrait: Image.Image) -> dict[str, Image.Image]:
    """Grace Hopper (512×600) for portrait; Eileen Collins cut to 16:9 (512×288) for landscape, the face
    whole (the crop keeps the top of the frame, where her face is)."""
    return {
        "portrait": portrait,
        "landscape": Image.fromarray(skimage.data.astronaut()).crop((0, 0, 512, 288)),
    }


@pytest.mark.parametrize(("family", "orientation", "latents"), CASES, ids=[f"{f}-{o}" for f, o, _ in CASES])
def test_production_shape_renders_end_to_end(
    family: str,
    orientation: str,
    latents: tuple[int, ...],
    rehearsal: Rehearsal,
    photos: dict[str, Image.Image],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    animator = rehearsal.animator
    (w, h), kept, native_fps, frames = EXPECTED[family]
    size = (w, h) if orientation == "landscape" else (h, w)
    assert animator.family.name == family
    assert animator.family.size == (w, h)  # the family default: no vivify.json shrinks it

    # What render_clip does not return: the latents the denoiser sees, the animator's own frames.
    seen: list[tuple[int, ...]] = []
    results: list[Frames] = []

    def record_latents(_: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        seen.append(tuple(kwargs.get("hidden_states", args[0] if args else None).shape[1:]))

    original = animator.animate

    def animate(*args: Any, **kwargs: Any) -> Frames:
        results.append(original(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(animator, "animate", animate)
    handle = denoisers(animator.pipe)[0].register_forward_pre_hook(record_latents, with_kwargs=True)
    try:
        clip = render_clip(animator, photos[orientation], AnimationRequest(steps=1, seed=0))
    finally:
        handle.remove()
    assert seen and set(seen) == {latents}
    assert results[0].frames.shape == (kept, size[1], size[0], 3)
    assert results[0].fps == native_fps
    # Where the time goes, for tuning: in a JUnit report's properties (junit_family=legacy)
    for name, seconds in {**rehearsal.seconds, **clip.stage_seconds}.items():
        request.node.user_properties.append((name, round(seconds, 2)))

    info = probe(clip.mp4)
    assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0)
    assert (info.width, info.height) == (clip.width, clip.height) == size
    assert info.frame_count == clip.frame_count == frames
    assert info.duration_s == pytest.approx(frames / 24, abs=0.05)
    for stage in ("analyzing", "animating", "decoding", "postprocessing", "encoding"):
        assert clip.stage_seconds[stage] > 0, stage


@pytest.mark.parametrize("family", list(EXPECTED))
def test_folders_are_laid_out_like_the_hub_repos(family: str, rehearsal: Rehearsal) -> None:
    from safetensors import safe_open

    folder = rehearsal.folder
    assert not (folder / FOLDER_DEFAULTS_FILE).exists()  # production defaults, not test ones
    weights = sorted(folder.rglob("*.safetensors"))
    assert weights
    if family == "svd":  # fp16 tensors in `.fp16.` files only, as the default repo's variant
        for path in weights:
            assert path.name.endswith(".fp16.safetensors"), path
            with safe_open(path, "pt") as f:
                names = f.keys()
                assert {f.get_slice(name).get_dtype() for name in names} == {"F16"}, path
    else:
        assert not any(".fp16." in path.name for path in weights)
    # Lightricks/LTX-Video's model_index.json names the text-to-video class; the loader builds the family's.
    index = json.loads((folder / "model_index.json").read_text())
    pipeline_class = rehearsal.animator.family.pipeline_class
    assert index["_class_name"] == ("LTXPipeline" if family == "ltx" else pipeline_class)
    assert type(rehearsal.animator.pipe).__name__ == pipeline_class
