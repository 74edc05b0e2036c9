"""The CPU portrait animator (embedded default, GPU-free fallback and fast preview). Not diffusion.

`PortraitAnimator` is imported when first asked for, so that importing `models.portrait.mesh` (the web
tier's rig, through app/core/service/rigs.py) loads neither the animator nor its warp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.portrait.animator import PortraitAnimator

__all__ = ["PortraitAnimator"]


def __getattr__(name: str) -> Any:
    if name == "PortraitAnimator":
        from models.portrait.animator import PortraitAnimator

        return PortraitAnimator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
