"""The live view's rig of a checked photo (models.portrait.mesh), answered by the photo check.

Built from the photo exactly as it will be stored (the normalised JPEG's bytes, decoded again) and at the
portrait animator's render size, so the browser draws the very rig the worker renders the clip from.
Never stored. CPU-bound (face analysis and the mesh): call it from a worker thread.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from PIL import Image

log = logging.getLogger("vivify.service")

DEFAULT_MAX_SIDE = 1080  # the portrait animator's default render size (its long side)


def rig_json(jpeg: bytes, max_side: int = DEFAULT_MAX_SIDE) -> dict[str, Any] | None:
    """The rig's JSON (MeshRig.to_json) of the stored photo's bytes; None when no usable face is found
    or the rig cannot be built (that is logged: a photo check never fails for want of a rig)."""
    from models.portrait.mesh import rig_of_photo  # the door to the animator's rig (mediapipe, cv2)

    try:
        with Image.open(io.BytesIO(jpeg)) as img:
            image = img.convert("RGB")
        rig = rig_of_photo(image, max_side=max_side)
    except Exception as exc:
        log.warning("rig not built (%s)", type(exc).__name__, exc_info=True)
        return None
    return None if rig is None else rig.to_json()
