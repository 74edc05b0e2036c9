"""Fixtures shared by every test folder. Keep this small: folders add their own conftest.py."""

from __future__ import annotations

import io

import pytest
from hypothesis import settings as hypothesis_settings
from matplotlib import cbook
from PIL import Image

# No per-example deadline: on a loaded 2-core CI machine a slow example is not a bug. A failure prints
# the blob that reproduces it (@reproduce_failure), since CI keeps no example database.
hypothesis_settings.register_profile("vivify", deadline=None, print_blob=True)
hypothesis_settings.load_profile("vivify")


@pytest.fixture(scope="session")
def portrait() -> Image.Image:
    """A real portrait (Grace Hopper, 512×600 RGB)."""
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
        return img.convert("RGB")


@pytest.fixture(scope="session")
def portrait_jpeg(portrait: Image.Image) -> bytes:
    buf = io.BytesIO()
    portrait.save(buf, "JPEG", quality=90)
    return buf.getvalue()
