"""Animator names → classes. Imports are lazy so that choosing the CPU animator never imports torch."""

from __future__ import annotations

import importlib
from typing import Any

from models.base import Animator

ANIMATORS = ("portrait", "push-in", "diffusion")


def create_animator(name: str, **options: Any) -> Animator:
    """Build (not set up) an animator by name. `options` go to the animator's constructor."""
    if name == "push-in":
        from models.push_in import PushInAnimator

        return PushInAnimator(**options)
    if name == "portrait":
        from models.portrait import PortraitAnimator  # CPU portrait animator (issue 4)

        return PortraitAnimator(**options)
    if name == "diffusion":
        from models.diffusion import DiffusionAnimator  # GPU image-to-video (issue 3)

        return DiffusionAnimator(**options)
    if ":" in name:
        # "package.module:Class" names an animator outside this package (test fixtures, plug-ins).
        module_name, _, class_name = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot load animator {name!r}: {exc}") from exc
        return cls(**options)
    raise ValueError(
        f"unknown animator {name!r}; expected one of {', '.join(ANIMATORS)} or 'package.module:Class'"
    )
