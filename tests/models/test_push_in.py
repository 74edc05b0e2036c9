"""The push-in animator through render_clip: a real clip from a real portrait."""

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

from models.base import AnimationRequest, Canceled, Stage
from models.push_in import PushInAnimator
from models.registry import create_animator
from models.render import render_clip
from models.video import probe, read_frames


@pytest.fixture(scope="module")
def portrait() -> Image.Image:
    img = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    img.thumbnail((160, 160))
    return img


def test_render_clip_gives_a_4s_24fps_h264(portrait: Image.Image) -> None:
    stages = []
    clip = render_clip(PushInAnimator(), portrait, AnimationRequest(), lambda s, f, d="": stages.append(s))
    info = probe(clip.mp4)
    assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0)
    assert info.frame_count == clip.frame_count == 96
    assert clip.duration_s == pytest.approx(4.0)
    assert {Stage.ANALYZING, Stage.ANIMATING, Stage.ENCODING} <= set(stages)
    assert set(clip.stage_seconds) >= {"animating", "encoding"}


def test_it_really_zooms_in(portrait: Image.Image) -> None:
    frames = read_frames(render_clip(PushInAnimator(zoom=1.2), portrait, AnimationRequest(frames=24)).mp4)
    first, last = frames[0].astype(float), frames[-1].astype(float)
    assert np.abs(first - last).mean() > 5  # the picture changes
    # Zooming in enlarges: the centre crop of the first frame, scaled up, resembles the last frame.
    h, w = first.shape[:2]
    crop = Image.fromarray(frames[0][h // 12 : h - h // 12, w // 12 : w - w // 12]).resize((w, h))
    assert np.abs(np.asarray(crop, float) - last).mean() < np.abs(first - last).mean()


def test_cancel_stops_between_frames(portrait: Image.Image) -> None:
    seen = []

    def progress(stage: Stage, fraction: float, detail: str = "") -> None:
        if stage is not Stage.ANIMATING:
            return
        seen.append(fraction)
        if fraction >= 0.25:
            raise Canceled

    with pytest.raises(Canceled):
        render_clip(PushInAnimator(), portrait, AnimationRequest(frames=40), progress)  # drawn as encoded
    assert max(seen) == pytest.approx(0.25)


def test_registry_names() -> None:
    assert create_animator("push-in").name == "push-in"
    with pytest.raises(ValueError, match="unknown animator"):
        create_animator("nope")
