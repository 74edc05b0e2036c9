"""The live view's rig of a checked photo (models.portrait.mesh), answered by the photo check.

Built from the photo exactly as it will be stored (the normalised JPEG's bytes, decoded again) and at the
portrait animator's render size, so the browser draws the very rig the worker renders the clip from.
Never stored. CPU-bound (face analysis and the mesh): call it from a worker thread.
"""

from __future__ import annotations

import io
import logging
import threading
from typing import Any

from PIL import Image

from app.core.decode_budget import trim_heap

log = logging.getLogger("vivify.service")

DEFAULT_MAX_SIDE = 1080  # the portrait animator's default render size (its long side)


def rig_json(jpeg: bytes, max_side: int = DEFAULT_MAX_SIDE) -> dict[str, Any] | None:
    """The rig's JSON (MeshRig.to_json) of the stored photo's bytes; None when no usable face is found
    or the rig cannot be built (that is logged: a photo check never fails for want of a rig).

    Rigs read faces with mediapipe graphs of their own, not the ones every upload's check uses, so a burst
    of rig builds never queues an upload's analysis behind it. Freed memory goes back to the OS after."""
    from models.portrait.mesh import rig_of_photo  # the door to the animator's rig (mediapipe, cv2)

    try:
        with Image.open(io.BytesIO(jpeg)) as img:
            image = img.convert("RGB")
        rig = rig_of_photo(image, max_side=max_side, analyzer=_rig_analyzer())
    except Exception as exc:
        log.warning("rig not built (%s)", type(exc).__name__, exc_info=True)
        return None
    finally:
        trim_heap()
    return None if rig is None else rig.to_json()


_analyzer: Any = None
_analyzer_lock = threading.Lock()


def _rig_analyzer() -> Any:
    """The rig builds' own face analyzer (models.face.FaceAnalyzer), built on first use."""
    global _analyzer
    with _analyzer_lock:
        if _analyzer is None:
            from models.face import FaceAnalyzer
            from models.portrait.mesh import MAX_FACES

            _analyzer = FaceAnalyzer(max_faces=MAX_FACES)
        return _analyzer
