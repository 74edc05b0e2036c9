"""Uploaded photos: reject what is not a still JPEG/PNG/WebP photo, normalise the rest.

Everything here works on bytes already counted against the size limit (see app.web.forms).
The format is decided by content, never by file name or Content-Type; the pixel count is checked from
the header before any pixel is decoded; the stored photo is a fresh upright sRGB JPEG with no metadata.
A photo the service will not take raises the domain error of its kind (app.core.errors).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps

from app.core.errors import ErrorCode, Invalid, Malformed, Refused, TooLarge, Unsupported

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif")
JPEG_QUALITY = 92
# The animators work at ≤1024 px; a 2048 px photo keeps headroom and bounds storage and worker time.
MAX_STORED_SIDE = 2048

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never half a photo


@dataclass(frozen=True)
class Photo:
    image: Image.Image  # upright RGB, at most MAX_STORED_SIDE on its long side
    jpeg: bytes  # what gets stored
    width: int
    height: int
    source_format: str


def sniff_format(head: bytes) -> str | None:
    """The image format from magic bytes, or None. Names follow Pillow."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return "HEIF"
    return None


def _unsupported(what: str) -> Unsupported:
    return Unsupported(
        ErrorCode.UNSUPPORTED_TYPE, f"{what} is not supported; upload a JPEG, PNG or WebP photo."
    )


def open_photo(data: bytes, *, max_pixels: int, min_side: int) -> Image.Image:
    """Open and fully decode an upload, or raise Malformed, TooLarge, Unsupported or Invalid."""
    if not data:
        raise Malformed(ErrorCode.EMPTY_FILE, "The uploaded file is empty.")
    fmt = sniff_format(data[:32])
    if fmt == "GIF":
        raise _unsupported("GIF")
    if fmt == "HEIF":
        raise _unsupported("HEIC/HEIF/AVIF")
    if fmt not in ALLOWED_FORMATS:
        raise _unsupported("This file type")
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own limit; we want an error at any bomb.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = img.size
            if width * height > max_pixels:
                raise TooLarge(
                    ErrorCode.TOO_MANY_PIXELS,
                    f"The photo is {width}×{height} pixels; the limit is {max_pixels / 1e6:.0f} megapixels.",
                )
            if getattr(img, "is_animated", False) or getattr(img, "n_frames", 1) > 1:
                raise _unsupported("An animated image")
            img.load()
    except Refused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge(ErrorCode.TOO_MANY_PIXELS, "The photo has too many pixels.") from None
    except Exception as exc:  # Pillow's decoders raise many types on hostile input; all mean "unreadable"
        raise Malformed(
            ErrorCode.UNREADABLE_IMAGE, f"The photo could not be read ({type(exc).__name__}); is it complete?"
        ) from None
    if min(width, height) < min_side:
        raise Invalid(
            ErrorCode.PHOTO_TOO_SMALL,
            f"The photo is {width}×{height} pixels; each side needs {min_side} or more.",
        )
    return img


def _to_srgb(img: Image.Image) -> Image.Image:
    """Convert through the embedded ICC profile when there is one (wide-gamut and CMYK photos)."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return img
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(img, src, dst, outputMode=out_mode) or img
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img  # a broken profile: fall back to the plain conversion below


def to_rgb(img: Image.Image) -> Image.Image:
    """Any decoded mode → 8-bit RGB; transparency is flattened onto white."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("P", "PA", "LA", "RGBa", "La"):
        img = img.convert("RGBA")
    img = _to_srgb(img) if img.mode in ("RGB", "RGBA", "CMYK", "L") else img
    if img.mode == "RGBA":
        white = Image.new("RGB", img.size, (255, 255, 255))
        white.paste(img, mask=img.getchannel("A"))
        return white
    return img.convert("RGB") if img.mode != "RGB" else img


def normalise(img: Image.Image) -> Photo:
    """Upright (EXIF orientation applied), RGB, bounded size, re-encoded without metadata."""
    source_format = img.format or "?"
    img = ImageOps.exif_transpose(img) or img
    rgb = to_rgb(img)
    if max(rgb.size) > MAX_STORED_SIDE:
        rgb.thumbnail((MAX_STORED_SIDE, MAX_STORED_SIDE), Image.Resampling.LANCZOS)
    # A fresh image: no EXIF, GPS, ICC or comments can ride along into storage.
    clean = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    buf = io.BytesIO()
    clean.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True, subsampling="4:2:0")
    return Photo(clean, buf.getvalue(), clean.width, clean.height, source_format)


def read_photo(data: bytes, *, max_pixels: int, min_side: int) -> Photo:
    """Validate and normalise an upload in one call (CPU-bound: run it in a worker thread)."""
    img = open_photo(data, max_pixels=max_pixels, min_side=min_side)
    try:
        return normalise(img)
    except Exception as exc:  # e.g. malformed EXIF or ICC data that only fails while converting
        raise Malformed(
            ErrorCode.UNREADABLE_IMAGE, f"The photo could not be decoded ({type(exc).__name__})."
        ) from None
