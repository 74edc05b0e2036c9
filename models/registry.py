"""Animator names → classes. Imports are lazy so that choosing the CPU animator never imports torch."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from models.base import Animator

ANIMATORS = ("portrait", "push-in", "diffusion")


def create_animator(name: str, **options: Any) -> Animator:
    """Build (not set up) an animator by name. `options` go to the animator's constructor; the diffusion
    animator's speed settings among them become its one `speed` argument."""
    if name == "push-in":
        from models.push_in import PushInAnimator

        return PushInAnimator(**options)
    if name == "portrait":
        from models.portrait import PortraitAnimator

        return PortraitAnimator(**options)
    if name == "diffusion":
        from models.diffusion.animator import DiffusionAnimator
        from models.diffusion.speed import SpeedSettings

        # The options (VIVIFY_ANIMATOR_OPTIONS) are one flat dict: the constructor's own keywords, and
        # speed settings. Any other name goes to SpeedSettings, which refuses it and lists the known ones.
        own = inspect.signature(DiffusionAnimator).parameters.keys() - {"speed"}
        speed = SpeedSettings.from_options({k: v for k, v in options.items() if k not in own})
        return DiffusionAnimator(**{k: v for k, v in options.items() if k in own}, speed=speed)
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
