"""Chromium plays the clips the encoder writes at both sizes a visitor can ask for: an HD portrait
(level 4.0) and 4K UHD (level 5.1), each a real photo moving, from a page as the result view shows them
(looped, muted, inline, on screen: Chromium pauses a muted autoplay that is out of view)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples

from models.video import Mp4Writer
from tests.browser.test_journey import wait

pytestmark = pytest.mark.browser


def _clip(size: tuple[int, int], frames: int = 24) -> bytes:
    """The astronaut photo filling `size`, slowly zooming: real detail at every pixel the level covers."""
    w, h = size
    photo = Image.fromarray(samples.astronaut()).resize((w + 48, h + 48), Image.Resampling.BICUBIC)
    with Mp4Writer(w, h, 24) as writer:
        for i in range(frames):
            writer.write(np.asarray(photo.crop((i, i, i + w, i + h))))
        return writer.finish()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("playback")
    videos = []
    for name, size in (("hd", (1080, 1350)), ("uhd", (3840, 2160))):
        (folder / f"{name}.mp4").write_bytes(_clip(size))
        attrs = f'id="{name}" src="{name}.mp4" autoplay loop muted playsinline width="400"'
        videos.append(f"<video {attrs}></video>")
    (folder / "index.html").write_text(f"<!doctype html><html><body>{''.join(videos)}</body></html>")
    return folder / "index.html"


@pytest.mark.parametrize(("name", "size"), [("hd", (1080, 1350)), ("uhd", (3840, 2160))])
def test_chromium_plays_hd_and_4k_clips(own_driver, page: Path, name: str, size: tuple[int, int]) -> None:  # noqa: ANN001
    browser = own_driver
    browser.get(page.as_uri())
    video = browser.find_element("id", name)
    state = "return [arguments[0].readyState, arguments[0].error && arguments[0].error.message]"
    wait(browser, 30).until(
        lambda d: d.execute_script(state, video)[0] == 4 or d.execute_script(state, video)[1]
    )
    ready, error = browser.execute_script(state, video)
    assert (ready, error) == (4, None)  # HAVE_ENOUGH_DATA: decoded, not refused
    shown = browser.execute_script("return [arguments[0].videoWidth, arguments[0].videoHeight]", video)
    assert tuple(shown) == size
    t0 = browser.execute_script("return arguments[0].currentTime", video)
    time.sleep(0.6)
    t1 = browser.execute_script("return arguments[0].currentTime", video)
    assert t1 != t0 and not browser.execute_script("return arguments[0].paused", video), (t0, t1)
    # Frames really drawn, not a stalled decoder: Chromium's own count of presented frames grows.
    count = "return arguments[0].getVideoPlaybackQuality().totalVideoFrames"
    before = browser.execute_script(count, video)
    time.sleep(0.5)
    assert browser.execute_script(count, video) > before
