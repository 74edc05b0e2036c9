"""Uploaded photos: reject what is not a still JPEG/PNG/WebP photo, normalise the rest.

Everything here works on bytes already counted against the size limit (see app.web.forms).
The format is decided by content, never by file name or Content-Type; the pixel count is checked from
the header before any pixel is decoded; the stored photo is a fresh upright sRGB JPEG with no metadata.
A photo the service will not take raises the domain error of its kind (app.core.errors).
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps

from app.core.errors import ErrorCode, Invalid, Malformed, Refused, TooLarge, Unsupported
from models.clip_shape import UHD_LONG_SIDE, UHD_SHORT_SIDE, uhd_offered, uhd_size

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif")
JPEG_QUALITY = 92
# An HD clip's long side is at most HD_LONG_SIDE (models.clip_shape): a photo stored at 2048 px keeps
# headroom and bounds storage and worker time. A photo with the pixels for a 4K clip
# (models.clip_shape.uhd_offered) is stored up to the 4K box instead, 3840x2160 in its orientation
# (stored_size).
MAX_STORED_SIDE = 2048

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never half a photo


@dataclass(frozen=True)
class Photo:
    image: Image.Image  # upright RGB, at most stored_size()
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


# JPEG structure: a marker is 0xFF then a byte other than 0x00 (stuffing), 0xFF (fill) or RST0-7.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Bytes that can never end a scan (no 0xFF): spliced in before the EOI marker to see whether the last
# scan was complete (a complete one ignores them; a cut one decodes them as more of its data).
_PROBE_FILLER = bytes(b for b in np.random.default_rng(7).integers(0, 255, 2048, dtype=np.uint8))

# Bytes per pixel Pillow keeps for an image of each mode (RGB and the like are stored 4 bytes wide),
# plus what the conversion to a mode Image.reduce can shrink costs ("P" → RGBA, "1" → L, 16-bit → I).
_BYTES_PER_PIXEL = {"1": 1 + 1, "L": 1, "P": 1 + 4, **{m: 2 + 4 for m in ("I;16", "I;16B", "I;16L", "I;16N")}}
_DEFAULT_BYTES_PER_PIXEL = 4
# The steps after the early shrink (sRGB, white background, thumbnail, the fresh copy) hold up to this
# many copies of the shrunk image at 4 bytes a pixel; and libjpeg needs this much per source pixel for
# a progressive file's coefficients (2 bytes × 64 per 8×8 block, 4:2:0 chroma: 3 bytes in all).
_COPIES_AFTER_SHRINK = 3
_JPEG_COEFFICIENT_BYTES = 3


@dataclass
class PendingPhoto:
    """An upload whose header has been read and checked, not yet decoded (see decode_photo)."""

    image: Image.Image  # opened lazily; for a JPEG, draft() already asks libjpeg for a smaller size
    source_format: str
    width: int  # as stored in the file
    height: int
    decode_bytes: int  # the memory decoding and normalising it will need, estimated
    jpeg_eoi: int | None = None  # where a JPEG's end marker starts


def jpeg_end(data: bytes) -> int | None:
    """Where the EOI marker that closes the JPEG's (last) scan starts, or None when the file stops
    before it. Segments are skipped by their lengths, so thumbnails in EXIF and anything a camera
    writes after the EOI (MPF images, vendor trailers) do not count."""
    pos, n = 2, len(data)
    while pos + 1 < n:
        if data[pos] != 0xFF:  # junk between segments: libjpeg skips it to the next marker, so do we
            pos = data.find(b"\xff", pos)
            if pos < 0:
                return None
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return pos
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers
            pos += 2
            continue
        if pos + 3 >= n:
            return None
        seg_end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker != 0xDA:  # SOS: the entropy-coded data follows its header up to the next marker
            pos = seg_end
            continue
        found = _NEXT_MARKER.search(data, seg_end)
        if found is None:
            return None
        pos = found.start()
    return None


def _jpeg_cut_short(data: bytes, eoi: int) -> bool:
    """True when the last scan stops before its data does: libjpeg then pads the rest (a grey lower
    half) and only warns. Decoded twice at 1/8 scale, as sent and with filler spliced in before the
    EOI: a complete scan ignores the filler, a cut one decodes it as more data and differs."""

    def tiny(blob: bytes) -> bytes:
        with Image.open(io.BytesIO(blob), formats=["JPEG"]) as img:
            img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
            return img.tobytes()

    return tiny(data) != tiny(data[:eoi] + _PROBE_FILLER + data[eoi:])


def stored_size(width: int, height: int) -> tuple[int, int]:
    """The size a photo of (width, height) is stored at: the 4K box where it has the pixels for a 4K
    clip, else at most MAX_STORED_SIDE on its long side; aspect kept, never enlarged."""
    if uhd_offered((width, height)):
        return uhd_size((width, height))
    scale = min(1.0, MAX_STORED_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink_factor(width: int, height: int) -> int:
    """The integer factor a decode shrinks by at once: the largest that keeps the 4K box (3840 by 2160)
    for a photo with the pixels for 4K, else the long side under 2×MAX_STORED_SIDE, never under it."""
    if uhd_offered((width, height)):
        return max(1, min(max(width, height) // UHD_LONG_SIDE, min(width, height) // UHD_SHORT_SIDE))
    return max(1, max(width, height) // MAX_STORED_SIDE)


def inspect_photo(data: bytes, *, max_pixels: int, min_side: int) -> PendingPhoto:
    """Check an upload from its header alone (format, pixel count, animation, size, a JPEG's end) and
    estimate what decoding it costs; decodes no pixel. Raises Malformed, TooLarge, Unsupported or Invalid."""
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
            mode = img.mode
            decoded_w, decoded_h = width, height
            extra = 0
            if fmt == "JPEG":
                scale = _shrink_factor(width, height)
                if scale > 1:  # libjpeg decodes at 1/2, 1/4 or 1/8 size directly (DCT scaling)
                    img.draft(mode, (max(1, width // scale), max(1, height // scale)))
                    decoded_w, decoded_h = img.size
                if img.info.get("progressive") or img.info.get("progression"):
                    extra = width * height * _JPEG_COEFFICIENT_BYTES
    except Refused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge(ErrorCode.TOO_MANY_PIXELS, "The photo has too many pixels.") from None
    except Exception as exc:  # Pillow's decoders raise many types on hostile input; all mean "unreadable"
        raise _unreadable(exc) from None
    eoi = jpeg_end(data) if fmt == "JPEG" else None
    if fmt == "JPEG" and eoi is None:
        raise Malformed(
            ErrorCode.UNREADABLE_IMAGE, "The photo is incomplete (the JPEG stops before its end marker)."
        )
    if min(width, height) < min_side:
        raise Invalid(
            ErrorCode.PHOTO_TOO_SMALL,
            f"The photo is {width}×{height} pixels; each side needs {min_side} or more.",
        )
    factor = _shrink_factor(decoded_w, decoded_h)
    reduced_w, reduced_h = -(-decoded_w // factor), -(-decoded_h // factor)
    bpp = _BYTES_PER_PIXEL.get(mode, _DEFAULT_BYTES_PER_PIXEL)
    cost = decoded_w * decoded_h * bpp + extra
    box_w, box_h = _uhd_box(reduced_w, reduced_h)
    if (box_w, box_h) != (reduced_w, reduced_h):  # resized into the 4K box at once (decode_photo)
        cost += (reduced_w * reduced_h if factor > 1 else 0) + box_w * reduced_h  # the pass between
        reduced_w, reduced_h = box_w, box_h
    cost += reduced_w * reduced_h * _DEFAULT_BYTES_PER_PIXEL * _COPIES_AFTER_SHRINK
    return PendingPhoto(img, fmt, width, height, cost, eoi)


def _uhd_box(width: int, height: int) -> tuple[int, int]:
    """A photo with the pixels for 4K: the 4K box it is stored in; any other: its own size."""
    return uhd_size((width, height)) if uhd_offered((width, height)) else (width, height)


def _unreadable(exc: Exception) -> Malformed:
    return Malformed(
        ErrorCode.UNREADABLE_IMAGE, f"The photo could not be read ({type(exc).__name__}); is it complete?"
    )


# Modes whose pixels Image.reduce may average (not palette indices, not packed 16-bit).
_REDUCIBLE = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "I", "F"})
_REDUCE_AS = {"P": "RGBA", "PA": "RGBA", "1": "L"}  # the rest: 16-bit → I, any other → RGB
SOURCE_MODE = "vivify_source_mode"  # in a shrunk image's info: the mode it was decoded in


def decode_photo(pending: PendingPhoto, data: bytes) -> Image.Image:
    """Decode a checked upload and shrink it at once (integer box reduction, _shrink_factor) toward its
    stored size, and a photo with the pixels for 4K on into its 4K box (Lanczos): every later step works
    on the small copy, the full one is freed here. A 33-megapixel photo would otherwise be carried whole
    through the steps after (its integer factor is 1), four times the memory.
    Raises Malformed when the pixels cannot be read (a cut-off or damaged file)."""
    img = pending.image
    try:
        img.load()
        if pending.source_format == "JPEG":
            eoi = pending.jpeg_eoi
            if eoi is None or _jpeg_cut_short(data, eoi):
                raise Malformed(
                    ErrorCode.UNREADABLE_IMAGE,
                    "The photo is incomplete (its JPEG data stops early); upload the whole file.",
                )
        factor = _shrink_factor(*img.size)
        box = _uhd_box(*(-(-side // factor) for side in img.size))
        if factor > 1 or box != img.size:
            exif = img.getexif()  # the orientation must survive the shrink
            info = {**img.info, SOURCE_MODE: img.mode}
            if img.mode not in _REDUCIBLE:
                img = img.convert(_REDUCE_AS.get(img.mode, "I" if img.mode.startswith("I;16") else "RGB"))
            small = img.reduce(factor) if factor > 1 else img
            if box != small.size:
                boxed = small.resize(box, Image.Resampling.LANCZOS)
                if small is not img:
                    small.close()
                small = boxed
            img.close()
            pending.image.close()
            small.info = info
            if exif:
                small.info["exif"] = exif.tobytes()
            small.format = pending.source_format
            return small
        return img
    except Refused:
        raise
    except Exception as exc:
        raise _unreadable(exc) from None


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
        arr = np.asarray(img, dtype=np.float32)
        source = str(img.info.get(SOURCE_MODE, mode))
        top = 65535.0 if source.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr * np.float32(255.0 / top) + np.float32(0.5), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode in ("P", "PA", "LA", "RGBa", "La"):
        img = img.convert("RGBA")
    img = _to_srgb(img) if img.mode in ("RGB", "RGBA", "CMYK", "L") else img
    if img.mode == "RGBA":
        white = Image.new("RGB", img.size, (255, 255, 255))
        white.paste(img, mask=img.getchannel("A"))
        return white
    return img.convert("RGB") if img.mode != "RGB" else img


def normalise(img: Image.Image) -> Photo:
    """Upright (EXIF orientation applied), RGB, bounded size, re-encoded without metadata. Consumes
    `img`: each step closes the copy before it, so at most two copies are alive at once."""
    source_format = img.format or "?"
    upright = ImageOps.exif_transpose(img) or img
    if upright is not img:
        img.close()
    rgb = to_rgb(upright)
    if rgb is not upright:
        upright.close()
    box = stored_size(*rgb.size)
    if box != rgb.size:
        rgb.thumbnail(box, Image.Resampling.LANCZOS)
    # A fresh image: no EXIF, GPS, ICC or comments can ride along into storage.
    clean = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    rgb.close()
    buf = io.BytesIO()
    clean.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True, subsampling="4:2:0")
    return Photo(clean, buf.getvalue(), clean.width, clean.height, source_format)


def finish_photo(pending: PendingPhoto, data: bytes) -> Photo:
    """Decode and normalise an upload inspect_photo accepted (CPU-bound: run it in a worker thread)."""
    img = decode_photo(pending, data)
    try:
        return normalise(img)
    except Exception as exc:  # e.g. malformed EXIF or ICC data that only fails while converting
        raise Malformed(
            ErrorCode.UNREADABLE_IMAGE, f"The photo could not be decoded ({type(exc).__name__})."
        ) from None
