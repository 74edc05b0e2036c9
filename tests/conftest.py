"""Fixtures shared by every test folder. Keep this small: folders add their own conftest.py."""

from __future__ import annotations

import io

import pytest
from matplotlib import cbook
from PIL import Image


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
