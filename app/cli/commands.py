"""The `vivify` command's arguments and commands: up, web, worker, animate, fetch-model, migrate,
webhook-secret.

`up` is the whole product on one machine (embedded defaults); `web` and `worker` are the two
production processes. Workers run as `celery` processes (app/cli/supervisor.py), so the CLI never
imports worker/ or torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from app.cli.secret import with_local_secret
from app.cli.supervisor import WorkerSupervisor, events_worker_command, worker_command
from app.core.config import Settings, get_settings
from app.core.logging import configure_logging, logging_config
from app.core.queue import worker_queues
from models.clip_shape import (
    CLIP_DEFAULT_S,
    CLIP_MAX_S,
    CLIP_MIN_S,
    HD_LONG_SIDE,
    RESOLUTIONS,
    UHD_LONG_SIDE,
    UHD_MIN_SHORT_SIDE,
    UHD_SHORT_SIDE,
)

log = logging.getLogger("vivify")

# models.auto_motion.AUTO, the default motion: planned from the photo's faces. Not imported here, so
# that no command but `animate` loads numpy.
DEFAULT_MOTION = "auto"
# The commands that sign or verify with the secret: without VIVIFY_SECRET_KEY they use the data folder's.
SECRET_COMMANDS = ("up", "web", "worker", "webhook-secret")


def _migrate(settings: Settings) -> None:
    import migrations

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    migrations.upgrade(settings.resolved_database_url)
    log.info("database migrated in %.1f s", time.perf_counter() - t0)


def _serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    # uvicorn shuts down on SIGINT/SIGTERM, restores the previous handlers and re-raises the signal.
    # These handlers make that re-raise a no-op, so the caller's cleanup runs and we exit with 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    # Trust X-Forwarded-For only from configured proxies (never by default).
    proxies = ",".join(settings.trusted_proxies)
    uvicorn.run(
        "app.web.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        log_level=settings.log_level.lower(),
        log_config=logging_config(settings.log_level),  # JSON lines, in every uvicorn worker process
    )


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    host, port = args.host or settings.host, args.port or settings.port
    if not args.no_migrate:
        _migrate(settings)
    supervisor = WorkerSupervisor(
        worker_command(settings, beat=True, hostname=f"embedded@{socket.gethostname()}")
    )
    # Webhook deliveries get their own small consumer, so an event never waits behind a render. Its
    # metrics stay off: the animate worker owns VIVIFY_WORKER_METRICS_PORT if one is set.
    events = WorkerSupervisor(
        events_worker_command(settings, hostname=f"events@{socket.gethostname()}"),
        env={**os.environ, "VIVIFY_WORKER_METRICS_PORT": "0"},
    )
    supervisor.start()
    events.start()
    # uvicorn handles SIGINT/SIGTERM and returns; the workers are stopped in `finally`.
    print(f"Vivify is running on http://{host}:{port}  (Ctrl-C to stop)", flush=True)
    try:
        _serve(settings, host, port)
    finally:
        events.stop()
        supervisor.stop()
    return 0


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    if args.migrate or settings.migrate_on_start:
        _migrate(settings)
    host, port = args.host or settings.host, args.port or settings.port
    print(f"Vivify web on http://{host}:{port}", flush=True)
    _serve(settings, host, port, workers=args.workers)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.migrate or settings.migrate_on_start:
        _migrate(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if args.metrics_port is not None:
        os.environ["VIVIFY_WORKER_METRICS_PORT"] = str(args.metrics_port)  # read by the exec'd worker
    cmd = worker_command(
        settings,
        queues=args.queues or ",".join(worker_queues(settings, maintenance=not args.no_maintenance)),
        concurrency=args.concurrency,
        pool=args.pool,
        beat=args.beat,
        hostname=args.hostname,
    )
    sys.stdout.flush()
    os.execv(cmd[0], cmd)  # the worker replaces this process: signals go straight to Celery
    return 0  # pragma: no cover


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError("size must be at least 16x16")
    return w, h


def _parse_duration(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not CLIP_MIN_S <= seconds <= CLIP_MAX_S:
        raise argparse.ArgumentTypeError(
            f"duration must be {CLIP_MIN_S:g} to {CLIP_MAX_S:g} seconds, got {text!r}"
        )
    return round(seconds, 1)


def _animate_remote(args: argparse.Namespace, output: Path) -> int:
    """`vivify animate PHOTO --server URL`: the same clip from a running service, via its public API."""
    import httpx

    from app.cli.client import ClientError, animate_remote

    local_only = [f"--{n}" for n in ("model", "steps", "frames", "size") if getattr(args, n) is not None]
    if local_only:
        print(f"{', '.join(local_only)} only apply without --server", file=sys.stderr)
        return 2
    if not args.photo.is_file():
        print(f"cannot read {args.photo}: no such file", file=sys.stderr)
        return 2
    try:
        job = animate_remote(
            args.server,
            args.photo,
            output,
            motion=args.motion,
            seed=args.seed,
            animator=args.animator,
            duration_s=args.duration,
            resolution=args.resolution,
        )
    except ClientError as exc:
        print(f"the service refused or failed the job: {exc}", file=sys.stderr)
        return 1
    except (httpx.TransportError, OSError) as exc:
        print(f"cannot reach {args.server} or write {output}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {output} (job {job['id']}, {job['animator']}, seed {job['seed']})")
    plan = job.get("plan") or {}
    if plan.get("description"):
        print(f"  planned motion: {plan['description']}")
    if (job.get("video") or {}).get("note"):
        print(f"  {job['video']['note']}")
    if job.get("clip_check"):
        print(f"  {job['clip_check']['summary']}")
    return 0


def cmd_animate(args: argparse.Namespace, settings: Settings) -> int:
    output: Path = args.output or Path(f"{args.photo.stem}.mp4")
    if args.server:
        return _animate_remote(args, output)
    from app.cli.render import animate_here

    return animate_here(args, settings, output)


def cmd_check_clip(args: argparse.Namespace, settings: Settings) -> int:
    """`vivify check-clip PHOTO CLIP.mp4`: the clip check's figures as JSON; exit 1 when it fails."""
    from app.cli.render import check_clip_here

    return check_clip_here(args, settings)


def cmd_fetch_model(args: argparse.Namespace, settings: Settings) -> int:
    """Download a diffusion model's weights into the Hugging Face cache, so workers can run offline."""
    configured = settings.animator == "diffusion"
    model = args.hub_id or (settings.model if configured else None)
    # The configured model's own loading options apply when it is the one fetched.
    options = settings.animator_options if configured and model == settings.model else {}
    revision = args.revision or options.get("revision")
    if model and Path(model).expanduser().is_dir():
        print(f"{model} is a local folder: nothing to fetch (workers read it directly)")
        return 0
    try:
        from huggingface_hub import constants

        from models.base import AnimatorUnavailable
        from models.diffusion.families import DEFAULT_FAMILY, FAMILIES
        from models.diffusion.loading import fetch_model
    except ImportError as exc:
        print(f"fetch-model needs the gpu extra (pip install 'vivify[gpu]'): {exc}", file=sys.stderr)
        return 2
    family_name = options.get("family")
    if family_name is not None and family_name not in FAMILIES:
        print(f"unknown family {family_name!r}; expected one of {', '.join(FAMILIES)}", file=sys.stderr)
        return 2
    family = FAMILIES[family_name] if family_name else None
    default = (family or FAMILIES[DEFAULT_FAMILY]).hub_id
    model = model or default
    if constants.HF_HUB_OFFLINE:
        print(
            "HF_HUB_OFFLINE is set: fetch-model downloads from the Hub; unset it for this command",
            file=sys.stderr,
        )
        return 2
    for name in ("httpx", "httpx2"):  # a log line per HTTP request would bury the outcome
        logging.getLogger(name).setLevel(logging.WARNING)
    at = f" at {revision}" if revision else ""
    print(f"fetching {model}{at} into {constants.HF_HUB_CACHE} ...", flush=True)
    try:
        fetched = fetch_model(model, revision=revision, variant=options.get("variant", "auto"), family=family)
    except AnimatorUnavailable as exc:
        print(f"cannot fetch: {exc}", file=sys.stderr)
        return 1
    variant = f", variant {fetched.variant}" if fetched.variant else ""
    print(
        f"fetched {model} (commit {fetched.commit[:12]}{variant}): {len(fetched.files)} files, "
        f"{fetched.size / 1e6:,.1f} MB"
    )
    print(f"  in {fetched.path}")
    print(
        f"Workers that share this cache (HF_HOME={constants.HF_HOME}) can now load {model} without the Hub:"
    )
    settings_too = []  # what else a worker needs to load this very model and revision
    if not (configured and model == (settings.model or default)):
        settings_too.append(f"VIVIFY_ANIMATOR=diffusion VIVIFY_MODEL={model}")
    if revision and revision != options.get("revision"):
        settings_too.append(f'"revision": "{revision}" in VIVIFY_ANIMATOR_OPTIONS')
    print("  run them with HF_HUB_OFFLINE=1" + "".join(f", {s}" for s in settings_too))
    return 0


def cmd_webhook_secret(args: argparse.Namespace, settings: Settings) -> int:
    """Print the key webhook receivers verify signatures with (whsec_..., Standard Webhooks)."""
    print(settings.webhook_secret_text)
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    _migrate(settings)
    print(f"migrated {settings.resolved_database_url.split('@')[-1]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vivify", description="Bring portrait photos to life.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="the whole product on one machine (web + one worker, embedded defaults)")
    up.add_argument("--host", help="default: VIVIFY_HOST / HOST / 127.0.0.1")
    up.add_argument("--port", type=int, help="default: VIVIFY_PORT / PORT / 8000")
    up.add_argument("--no-migrate", action="store_true", help="do not apply migrations on start")
    up.set_defaults(func=cmd_up)

    web = sub.add_parser("web", help="the web tier (uvicorn)")
    web.add_argument("--host")
    web.add_argument("--port", type=int)
    web.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    web.add_argument("--migrate", action="store_true", help="apply migrations before serving")
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser("worker", help="a Celery worker (one process per GPU)")
    worker.add_argument(
        "-Q", "--queues", help="comma-separated; default: animate, the animator's queue, maintenance"
    )
    worker.add_argument(
        "--no-maintenance",
        action="store_true",
        help="leave the maintenance queue to another worker (GPU workers)",
    )
    worker.add_argument("-c", "--concurrency", type=int, default=1)
    worker.add_argument("--pool", default="solo", help="solo (default, one GPU per process) or prefork")
    worker.add_argument(
        "-B", "--beat", action="store_true", help="also run the periodic tasks (one per site)"
    )
    worker.add_argument("-n", "--hostname", help="Celery node name")
    worker.add_argument("--migrate", action="store_true", help="apply migrations before starting")
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics of this process here (default VIVIFY_WORKER_METRICS_PORT; 0 = off)",
    )
    worker.set_defaults(func=cmd_worker)

    animate = sub.add_parser("animate", help="animate one photo, here or on a running service (--server)")
    animate.add_argument("photo", type=Path)
    animate.add_argument("-o", "--output", type=Path, help="the MP4 to write (default: PHOTO's name .mp4)")
    animate.add_argument(
        "--server", help="URL of a running Vivify service (e.g. http://127.0.0.1:8000): submit there"
    )
    animate.add_argument(
        "--motion",
        default=DEFAULT_MOTION,
        help='a preset name or short text, e.g. "look left and smile" (default: auto, planned from the '
        "photo's faces)",
    )
    animate.add_argument("--animator", help="portrait, push-in, diffusion or package.module:Class")
    animate.add_argument("--model", help="a Hugging Face hub id or a local folder (diffusion)")
    animate.add_argument("--steps", type=int)
    animate.add_argument("--frames", type=int)
    animate.add_argument(
        "--duration",
        type=_parse_duration,
        help=f"the clip's length in seconds, {CLIP_MIN_S:g} to {CLIP_MAX_S:g} (default "
        f"{CLIP_DEFAULT_S:g}); a diffusion model keeps its own length",
    )
    animate.add_argument(
        "--resolution",
        choices=RESOLUTIONS,
        help=f"hd (default: long side at most {HD_LONG_SIDE}) or 4k (at most "
        f"{UHD_LONG_SIDE}x{UHD_SHORT_SIDE}, for photos with a short side of {UHD_MIN_SHORT_SIDE} px or "
        "more); --size wins over it",
    )
    animate.add_argument("--size", type=_parse_size, help="WxH, e.g. 512x512")
    animate.add_argument("--seed", type=int)
    animate.set_defaults(func=cmd_animate)

    check = sub.add_parser(
        "check-clip",
        help="measure a clip against its photo (likeness, steadiness, colour, life) and print the clip "
        "check as JSON; exits 1 when the clip fails it",
    )
    check.add_argument("photo", type=Path)
    check.add_argument("clip", type=Path, help="an MP4 made from PHOTO")
    check.add_argument("--loops", action="store_true", help="the motion promises a loop: measure the seam")
    check.add_argument(
        "--still", action="store_true", help="no face is meant to move (a push-in): no motion is asked for"
    )
    check.set_defaults(func=cmd_check_clip)

    fetch = sub.add_parser(
        "fetch-model",
        help="download a diffusion model into the Hugging Face cache (HF_HOME), for HF_HUB_OFFLINE=1 workers",
    )
    fetch.add_argument(
        "hub_id", nargs="?", help="default: the configured model (VIVIFY_MODEL) or the default family's"
    )
    fetch.add_argument(
        "--revision", help="a commit, tag or branch to pin (default: the configured one, or main)"
    )
    fetch.set_defaults(func=cmd_fetch_model)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    secret = sub.add_parser("webhook-secret", help="print the secret that webhook receivers verify with")
    secret.set_defaults(func=cmd_webhook_secret)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic ValidationError: say what is wrong, no traceback
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command in SECRET_COMMANDS:
        try:
            # The servers export it: their children, and uvicorn's app factory, read the environment.
            export = args.command != "webhook-secret"
            settings = with_local_secret(settings, export=export)
        except (OSError, ValueError) as exc:
            print(f"no usable secret: {exc}", file=sys.stderr)
            return 2
        get_settings.cache_clear()
    return int(args.func(args, settings) or 0)
