"""`vivify animate PHOTO` without a server: set the animator up here, render one clip and check it with the
same guard as the workers (VIVIFY_CLIP_GUARD); and `vivify check-clip`, the check alone."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from app.core.clip_words import clip_check_summary
from app.core.config import Settings


def animate_here(args: argparse.Namespace, settings: Settings, output: Path) -> int:
    """Render `args.photo` with the asked (or configured) animator into `output`; prints stage times."""
    from PIL import Image, ImageOps

    from app.core.service.plans import plan_json
    from models.base import AnimationError, AnimationRequest, AnimatorUnavailable, Stage
    from models.clip_shape import CLIP_DEFAULT_S, HD
    from models.registry import create_animator
    from worker import model_cache

    name = args.animator or settings.animator
    # The configured animator's options (VIVIFY_ANIMATOR_OPTIONS) belong to it alone.
    options: dict[str, object] = dict(settings.animator_options) if name == settings.animator else {}
    model = args.model or (settings.model if name == settings.animator else None)
    if model:
        options["model"] = model
    if name == "diffusion":
        # One clip: a warm-up at the family's shapes would only double the work (or run at shapes this
        # clip does not use); the job itself chooses kernels and compiles.
        options["warmup"] = False
        if settings.device != "auto":
            options["device"] = settings.device
    try:
        photo = ImageOps.exif_transpose(Image.open(args.photo)).convert("RGB")
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.photo}: {exc}", file=sys.stderr)
        return 2
    request = AnimationRequest(
        motion=args.motion,
        seed=args.seed,
        frames=args.frames,
        size=args.size,
        steps=args.steps,
        duration_s=args.duration,
        resolution=args.resolution or HD,
    )
    # The motion it will make, in the words the page and the API use, before the work starts.
    plan = plan_json(photo, args.motion, args.seed or 0, args.duration or CLIP_DEFAULT_S)
    if plan and plan.get("description"):
        print(f"planned motion: {plan['description']}", flush=True)
    last: list[str] = []

    def progress(stage: Stage | str, fraction: float, detail: str = "") -> None:
        value = Stage(stage).value
        if not last or last[-1] != value:
            last.append(value)
            print(f"  {value} ...", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    animator = create_animator(name, **options)
    animator.setup()
    try:
        guard = model_cache.get_guard(settings)
    except AnimatorUnavailable as exc:
        print(str(exc), file=sys.stderr)
        return 2
    setup_s = time.perf_counter() - t0
    try:
        checked = guard.render(animator, photo, request, progress)
    except AnimationError as exc:
        print(f"animation failed ({exc.code}): {exc.message}", file=sys.stderr)
        check = getattr(exc, "check", None)
        if check is not None:
            print(f"  {clip_check_summary(check.to_json())}", file=sys.stderr)
        return 1
    clip = checked.clip
    output.write_bytes(clip.mp4)
    print(f"wrote {output}: {clip.width}x{clip.height}, {clip.frame_count} frames at {clip.fps:g} fps")
    if clip.note:
        print(f"  {clip.note}")
    print(f"  {clip_check_summary(checked.check.to_json())} [made by {checked.check.rendered_by}]")
    print(f"  setup: {setup_s:.2f} s")
    for stage, seconds in clip.stage_seconds.items():
        print(f"  {stage}: {seconds:.2f} s")
    print(f"  checking: {checked.check.seconds:.2f} s")
    print(f"  total: {time.perf_counter() - t0:.2f} s")
    return 0


def check_clip_here(args: argparse.Namespace, settings: Settings) -> int:
    """Print the clip check of `args.clip` against `args.photo` as JSON (the job's `clip_check`), with the
    limits the settings give; 0 when it passes, 1 when it fails, 2 when a file cannot be read."""
    from PIL import Image, ImageOps

    from models.base import AnimatorUnavailable
    from models.clip_check import Promise
    from worker import model_cache

    try:
        photo = ImageOps.exif_transpose(Image.open(args.photo)).convert("RGB")
        mp4 = args.clip.read_bytes()
    except (OSError, ValueError) as exc:
        print(f"cannot read {exc}", file=sys.stderr)
        return 2
    try:
        guard = model_cache.get_guard(settings)
        check = guard.checker.check(
            photo, mp4, promise=Promise(moves=not args.still, loops=args.loops), limits=guard.limits
        )
    except AnimatorUnavailable as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ValueError as exc:  # not a video ffmpeg can read
        print(f"cannot read {args.clip}: {exc}", file=sys.stderr)
        return 2
    data = check.to_json()
    print(json.dumps({**data, "summary": clip_check_summary(data)}, indent=2))
    return 0 if check.passed else 1
