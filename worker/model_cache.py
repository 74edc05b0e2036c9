"""The animator, built and set up once per worker process (never in the web process, never at import).

A worker process serves one animator for its whole life: loading weights is the expensive part of a
GPU job, so it happens when a solo-pool worker starts (see celery_app.LoadAnimator; a prefork child
loads on its first task) and is reused.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from app.core.config import Settings
from models.base import Animator, AnimatorUnavailable

log = logging.getLogger(__name__)

_lock = threading.Lock()
_animator: Animator | None = None
_key: tuple[str, str | None, str] | None = None


def animator_options(settings: Settings) -> dict[str, Any]:
    """Constructor options for the configured animator: Settings.animator_options, plus the model and
    device for the diffusion family."""
    options: dict[str, Any] = dict(settings.animator_options)
    if settings.animator == "diffusion":
        if settings.model:
            options["model"] = settings.model
        if settings.device != "auto":
            options["device"] = settings.device
    return options


def describe(settings: Settings) -> str:
    """The animator and model as an operator set them, for messages: `diffusion (model org/svd-xt)`."""
    return f"{settings.animator} (model {settings.model or 'default'})"


def get_animator(settings: Settings) -> Animator:
    """The process's animator, set up on first use.

    Raises AnimatorUnavailable for any failure to build or set it up; an animator's own
    AnimatorUnavailable keeps its message, anything else is named with the animator and model, since
    e.g. "no model folder at ..." alone does not say which setting to fix.
    """
    global _animator, _key
    key = (settings.animator, settings.model, settings.device)
    with _lock:
        if _animator is None or _key != key:
            from models.registry import create_animator

            t0 = time.perf_counter()
            try:
                animator = create_animator(settings.animator, **animator_options(settings))
                animator.setup()
            except AnimatorUnavailable:
                raise
            except Exception as exc:
                raise AnimatorUnavailable(
                    f"animator {describe(settings)} could not be set up: {type(exc).__name__}: {exc} "
                    "(check VIVIFY_ANIMATOR, VIVIFY_MODEL and VIVIFY_ANIMATOR_OPTIONS)"
                ) from exc
            _animator, _key = animator, key
            log.info("animator %s ready in %.1f s", settings.animator, time.perf_counter() - t0)
        return _animator


def loaded() -> Animator | None:
    """The animator if this process already set one up (for tests and health output)."""
    return _animator


def reset() -> None:
    """Forget the animator (tests; a process that must reload after a fatal device error)."""
    global _animator, _key
    with _lock:
        _animator, _key = None, None


def free_device_memory() -> None:
    """Release cached GPU memory after an out-of-memory error, without importing torch if unused."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
