"""Where the photo check's rigs are kept in the object store, and reading one back: one place for the
web tier (which keeps them), the worker (which renders from them) and job deletion (which removes them).

A photo's rigs live under its content's hash, one object per kind of rig (models.portrait.mesh.rig_name:
format version, render size, face count), so any job made from the same photo finds them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from app.core.storage import ObjectStore

log = logging.getLogger("vivify.rigs")


def photo_digest(photo: bytes) -> str:
    """The SHA-256 of the stored photo's bytes: what its rigs are kept under."""
    return hashlib.sha256(photo).hexdigest()


def rigs_prefix(photo_sha256: str) -> str:
    """The folder of every rig kept for one photo."""
    return f"rigs/{photo_sha256}/"


def rig_key(photo_sha256: str, name: str) -> str:
    """One kept rig of one photo; `name` says which kind (models.portrait.mesh.rig_name)."""
    return rigs_prefix(photo_sha256) + name


def read_rig(store: ObjectStore, key: str) -> dict[str, Any] | None:
    """The rig kept at `key`, or None: none kept there, or one that cannot be read (the store down, not
    JSON), which is logged. A missing rig only costs building it again."""
    try:
        data = json.loads(store.get(key))
    except KeyError:
        return None
    except Exception as exc:
        log.warning("kept rig not read (%s)", type(exc).__name__, exc_info=True)
        return None
    return data if isinstance(data, dict) else None


def keep_rig(store: ObjectStore, key: str, rig: dict[str, Any]) -> None:
    """Keep a rig's JSON at `key`; a store that cannot take it is logged, not raised (the live view still
    gets its rig, and the worker builds its own)."""
    try:
        store.put(key, json.dumps(rig, separators=(",", ":")).encode(), "application/json")
    except Exception as exc:
        log.warning("rig not kept (%s)", type(exc).__name__, exc_info=True)
