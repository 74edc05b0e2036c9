"""The photo at the portrait animator's render size: what the rig is built on and the clip drawn from.

Its own module, so the mesh (which the web tier's photo check builds) and the animator share it without
importing each other.
"""

from __future__ import annotations

from PIL import Image


def fit_photo(photo: Image.Image, size: tuple[int, int] | None, max_side: int) -> Image.Image:
    """The photo at output size: `size` if asked, else at most `max_side` long side (never enlarged)."""
    img = photo.convert("RGB")
    if size:
        return img.resize(size, Image.Resampling.LANCZOS) if img.size != tuple(size) else img
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img
