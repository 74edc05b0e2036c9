"""The live view's rig of a checked photo (models.portrait.mesh), answered by the photo check and kept.

Built from the photo exactly as it will be stored (the normalised JPEG's bytes, decoded again) and at the
portrait animator's render size, so the browser draws the very rig the worker renders the clip from. Kept
in the object store by the photo's content (app.core.kept_rigs), so the worker renders from it instead of
building it again, and a second check of the same photo answers it without building it. Rigs go with
the retention period (worker.maintenance) and with a deleted job's photo. CPU-bound (face analysis and
the mesh): call it from a worker thread.
"""

from __future__ import annotations

import io
import logging
import threading
from typing import Any

from PIL import Image

from app.core.decode_budget import trim_heap
from app.core.kept_rigs import keep_rig, photo_digest, read_rig, rig_key
from app.core.storage import ObjectStore
from models.clip_shape import HD_LONG_SIDE

log = logging.getLogger("vivify.service")


def rig_json(
    jpeg: bytes,
    max_side: int | None = None,
    store: ObjectStore | None = None,
    max_faces: int | None = None,
) -> dict[str, Any] | None:
    """The rig's JSON (MeshRig.to_json) of the stored photo's bytes; None when no usable face is found
    or the rig cannot be built (that is logged: a photo check never fails for want of a rig). With a
    store: the rig kept there for this photo when there is one, else built and kept. `max_side` and
    `max_faces`: the animator's (None: its defaults).

    Rigs read faces with mediapipe graphs of their own, not the ones every upload's check uses, so a burst
    of rig builds never queues an upload's analysis behind it. Freed memory goes back to the OS after."""
    from models.portrait.mesh import MAX_FACES, rig_name, rig_of_photo  # the rig's door

    max_side = HD_LONG_SIDE if max_side is None else max_side
    max_faces = MAX_FACES if max_faces is None else max_faces
    key = rig_key(photo_digest(jpeg), rig_name(max_side, max_faces))
    kept = read_rig(store, key) if store is not None else None
    if kept is not None:
        return kept
    try:
        with Image.open(io.BytesIO(jpeg)) as img:
            image = img.convert("RGB")
        rig = rig_of_photo(image, max_side=max_side, analyzer=_rig_analyzer(), max_faces=max_faces)
    except Exception as exc:
        log.warning("rig not built (%s)", type(exc).__name__, exc_info=True)
        return None
    finally:
        trim_heap()
    if rig is None:
        return None
    data = rig.to_json()
    if store is not None:
        keep_rig(store, key, data)
    return data


_analyzer: Any = None
_analyzer_lock = threading.Lock()


def _rig_analyzer() -> Any:
    """The rig builds' own face analyzer (models.face.FaceAnalyzer), built on first use. It reads as many
    faces as the portrait animator's does (SHARED_MAX_FACES), so both rig the same largest faces."""
    global _analyzer
    with _analyzer_lock:
        if _analyzer is None:
            from models.face import SHARED_MAX_FACES, FaceAnalyzer
            from models.portrait.mesh import MAX_FACES

            _analyzer = FaceAnalyzer(max_faces=max(MAX_FACES, SHARED_MAX_FACES))
        return _analyzer
