"""The clip's length and size a visitor may ask for: shared by the API, the CLI and every animator.

Plain Python (no numpy): the CLI's arguments and the web tier's fields read it without loading more.
"""

from __future__ import annotations

CLIP_MIN_S, CLIP_MAX_S, CLIP_DEFAULT_S = 3.0, 10.0, 4.0  # the lengths a visitor may ask for
HD, UHD = "hd", "4k"
RESOLUTIONS = (HD, UHD)
# An HD clip's long side at most: the size the portrait animator renders (and rigs) a photo at, unless
# configured otherwise. The one place this number is written.
HD_LONG_SIDE = 1080
UHD_LONG_SIDE, UHD_SHORT_SIDE = 3840, 2160
# 4K is offered for photos whose short side has at least this many pixels: below it, a "4K" clip would be
# little larger than an HD one (whose long side is HD_LONG_SIDE).
UHD_MIN_SHORT_SIDE = 1600


def uhd_offered(photo_size: tuple[int, int]) -> bool:
    """Whether a photo of this (width, height) has the pixels for a 4K clip."""
    return min(photo_size) >= UHD_MIN_SHORT_SIDE


def offered_resolutions(photo_size: tuple[int, int]) -> list[str]:
    """The clip sizes a photo of this (width, height) can have: HD always, 4K with the pixels for it."""
    return list(RESOLUTIONS) if uhd_offered(photo_size) else [HD]


def uhd_size(photo_size: tuple[int, int]) -> tuple[int, int]:
    """The 4K render size of a photo of (width, height): its aspect kept, its long side at most 3840 and
    its short side at most 2160, never larger than the photo itself."""
    w, h = photo_size
    scale = min(1.0, UHD_LONG_SIDE / max(w, h), UHD_SHORT_SIDE / min(w, h))
    return max(2, round(w * scale)), max(2, round(h * scale))
