"""Real portraits for the face, photo-check and portrait-animator tests (all offline sample data).

Small on purpose (<= 256 px): the tests check behaviour; full-size speed lives in bench/cpu_animator.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import skimage.data
from matplotlib import cbook
from PIL import Image, ImageOps


def _fit(img: Image.Image, side: int) -> Image.Image:
    img = img.convert("RGB")
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return img


def _sepia(img: Image.Image) -> Image.Image:
    g = np.asarray(img.convert("L"), np.float32) / 255.0
    tone = np.stack([g * 240 + 15, g * 200 + 20, g * 150 + 10], axis=-1)
    return Image.fromarray(tone.clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def grace_hopper() -> Image.Image:
    """Grace Hopper, 219x256, colour."""
    return _fit(Image.open(cbook.get_sample_data("grace_hopper.jpg")), 256)


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    """Eileen Collins, 256x256, colour."""
    return _fit(Image.fromarray(skimage.data.astronaut()), 256)


@pytest.fixture(scope="session")
def grey_portrait(grace_hopper: Image.Image) -> Image.Image:
    """A greyscale photo (mode L), as an old scan would arrive."""
    return grace_hopper.convert("L")


@pytest.fixture(scope="session")
def sepia_portrait(astronaut: Image.Image) -> Image.Image:
    return _sepia(astronaut)


@pytest.fixture(scope="session")
def small_portrait() -> Image.Image:
    """A small photo: the face is about 50 px tall."""
    return _fit(Image.open(cbook.get_sample_data("grace_hopper.jpg")), 128)


@pytest.fixture(scope="session")
def small_astronaut() -> Image.Image:
    return _fit(Image.fromarray(skimage.data.astronaut()), 128)


@pytest.fixture(scope="session")
def group_photo(grace_hopper: Image.Image, astronaut: Image.Image) -> Image.Image:
    """Three people side by side on a plain backdrop (a wide picture)."""
    canvas = Image.new("RGB", (640, 256), (196, 206, 218))
    canvas.paste(grace_hopper, (10, 0))
    canvas.paste(astronaut.resize((200, 200)), (240, 56))
    canvas.paste(grace_hopper.resize((150, 175)), (470, 81))
    return canvas


@pytest.fixture(scope="session")
def pair_photo(grace_hopper: Image.Image, astronaut: Image.Image) -> Image.Image:
    """Two people side by side: Grace Hopper (left, larger), the astronaut mirrored and tilted (right)."""
    canvas = Image.new("RGB", (512, 256), (196, 206, 218))
    canvas.paste(grace_hopper, (10, 0))
    tilted = ImageOps.mirror(astronaut).rotate(7, Image.Resampling.BICUBIC, fillcolor=(196, 206, 218))
    canvas.paste(tilted.resize((200, 200)), (290, 40))
    return canvas


@pytest.fixture(scope="session")
def no_face_photo() -> Image.Image:
    """A cup of coffee: no face anywhere."""
    return _fit(Image.fromarray(skimage.data.coffee()), 256)


@pytest.fixture(scope="session")
def face_analyzer():
    from models.face import FaceAnalyzer

    analyzer = FaceAnalyzer(max_faces=3)
    analyzer.setup()
    return analyzer


@pytest.fixture(scope="session")
def portrait_animator():
    from models.portrait import PortraitAnimator

    animator = PortraitAnimator(max_side=256)
    animator.setup()
    return animator


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """One torch thread for a module of tiny-model tests: they gain nothing from more, and on a shared
    machine extra threads spin-wait."""
    import torch  # only the diffusion tests use this fixture; the CPU animator's tests stay torch-free

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def clip_checker():
    """The clip check with its face and identity models set up (models.clip_check)."""
    from models.clip_check import ClipChecker

    checker = ClipChecker()
    checker.setup()
    return checker


@pytest.fixture(scope="session")
def full_size_animator():
    """The CPU portrait animator at its own render size (not the 256 px one above), for the clip-check
    and guard tests, which measure clips at the sizes visitors get."""
    from models.portrait import PortraitAnimator

    animator = PortraitAnimator()
    animator.setup()
    return animator
