"""`vivify animate PHOTO` without a server: set the animator up here and render one clip."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from app.core.config import Settings


def animate_here(args: argparse.Namespace, settings: Settings, output: Path) -> int:
    """Render `args.photo` with the asked (or configured) animator into `output`; prints stage times."""
    from PIL import Image, ImageOps

    from models.base import AnimationError, AnimationRequest, Stage
    from models.registry import create_animator
    from models.render import render_clip

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
        motion=args.motion, seed=args.seed, frames=args.frames, size=args.size, steps=args.steps
    )
    last: list[str] = []

    def progress(stage: Stage | str, fraction: float, detail: str = "") -> None:
        value = Stage(stage).value
        if not last or last[-1] != value:
            last.append(value)
            print(f"  {value} ...", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    animator = create_animator(name, **options)
    animator.setup()
    setup_s = time.perf_counter() - t0
    try:
        clip = render_clip(animator, photo, request, progress)
    except AnimationError as exc:
        print(f"animation failed ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    output.write_bytes(clip.mp4)
    print(f"wrote {output}: {clip.width}x{clip.height}, {clip.frame_count} frames at {clip.fps:g} fps")
    print(f"  setup: {setup_s:.2f} s")
    for stage, seconds in clip.stage_seconds.items():
        print(f"  {stage}: {seconds:.2f} s")
    print(f"  total: {time.perf_counter() - t0:.2f} s")
    return 0
