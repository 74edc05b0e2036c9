"""The animator, built and set up once per worker process (never in the web process, never at import).

A worker process serves one animator for its whole life: loading weights is the expensive part of a
GPU job, so it happens when a solo-pool worker starts (see celery_app.LoadAnimator; a prefork child
loads on its first task) and is reused.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from app.core.config import Settings
from models.base import Animator, AnimatorUnavailable

if TYPE_CHECKING:
    from models.guard import Guard

log = logging.getLogger(__name__)

_lock = threading.Lock()
_animator: Animator | None = None
_key: tuple[str, str | None, str] | None = None
_guard: Guard | None = None
_guard_key: tuple[Any, ...] | None = None
_fallback: Animator | None = None


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


def get_guard(settings: Settings) -> Guard:
    """The process's clip guard: the clip check's face and identity models, set up on first use, and the
    portrait animator it falls back to, built only when a clip first needs it.

    Raises AnimatorUnavailable when the identity model is not installed (the `worker` extra)."""
    global _guard, _guard_key
    from models import clip_check
    from models.guard import Guard, GuardMode

    limits = clip_check.CheckLimits(
        identity=settings.clip_check_identity_max,
        face_lost=settings.clip_check_face_lost_max,
        jitter=settings.clip_check_jitter_max or clip_check.JITTER_MAX,
        flicker=settings.clip_check_flicker_max or clip_check.FLICKER_MAX,
        life=clip_check.LIFE_MIN if settings.clip_check_life_min is None else settings.clip_check_life_min,
    )
    key = (settings.clip_guard, limits)
    with _lock:
        if _guard is None or _guard_key != key:
            checker = clip_check.ClipChecker()
            try:
                checker.setup()
            except Exception as exc:
                raise AnimatorUnavailable(
                    f"the clip check cannot start: {type(exc).__name__}: {exc}"
                ) from exc
            _guard = Guard(checker, GuardMode(settings.clip_guard), limits, fallback=fallback_animator)
            _guard_key = key
        return _guard


def fallback_animator() -> Animator:
    """The portrait animator the guard falls back to: built and set up once, on first need."""
    global _fallback
    with _lock:
        if _fallback is None:
            from models.registry import create_animator

            animator = create_animator("portrait")
            animator.setup()
            _fallback = animator
        return _fallback


def loaded() -> Animator | None:
    """The animator if this process already set one up (for tests and health output)."""
    return _animator


def reset() -> None:
    """Forget the animator (tests; a process that must reload after a fatal device error)."""
    global _animator, _key, _guard, _guard_key, _fallback
    with _lock:
        _animator, _key, _guard, _guard_key, _fallback = None, None, None, None, None


def free_device_memory() -> None:
    """Release cached GPU memory after an out-of-memory error, without importing torch if unused."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
