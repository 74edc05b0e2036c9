"""The animate task: job id in, clip at deterministic keys out.

The task only carries a job id. It reloads the row, skips a job that is already final, renders with
the process's animator, stores the MP4 and poster at keys derived from the job id and only then marks
the job succeeded (a conditional UPDATE). A redelivered or retried task therefore overwrites the same
two objects at most and never produces a second clip.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from billiard.exceptions import SoftTimeLimitExceeded
from celery import Task
from PIL import Image
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from app.core import jobs
from app.core.config import Settings, get_settings
from app.core.db import session_factory
from app.core.endings import JobEnding, Outcome
from app.core.errors import ErrorCode
from app.core.kept_rigs import photo_digest, read_rig, rig_key
from app.core.logging import job_context
from app.core.queue import TaskName
from app.core.storage import ObjectStore, StorageUnavailable, get_store, gif_key, poster_key, video_key
from models.base import AnimationError, AnimationRequest, Animator, Canceled, FaceBox, Stage
from models.clip_shape import HD
from models.motion_curves import CurvesError, RecordedMotion
from worker import metrics, model_cache
from worker import webhooks as worker_webhooks
from worker.celery_app import app
from worker.webhooks import JobEvents

if TYPE_CHECKING:
    from models.guard import Checked, Guard

log = logging.getLogger(__name__)


class RetryableAnimationError(Exception):
    """An AnimationError the animator marked retryable (e.g. a model download that timed out)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)  # both in args, so Celery can pickle it across a retry
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class AnimatorSetupFailed(Exception):
    """The process's animator could not be set up (raised by setup_animator only)."""

    def __init__(self, animator: str) -> None:
        super().__init__(animator)
        self.animator = animator


class PhotoMissing(Exception):
    """The job's photo is no longer in the store."""


class PhotoUnreadable(Exception):
    """The stored photo is not an image any more (the web tier re-encoded it, so: corruption)."""


class TimedOut(Exception):
    """The render ran past its soft or hard time limit."""

    def __init__(self, limit_s: float) -> None:
        super().__init__(limit_s)
        self.limit_s = limit_s


# The store or the database was briefly unreachable: worth another try.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    StorageUnavailable,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (or a CPU MemoryError), recognised without importing torch."""
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or "out of memory" in str(exc).lower()
    )


@dataclass(frozen=True)
class Failure:
    """How a job that raised one of `raised` (and meets `when`) ends.

    `code` None: the exception's own code and message (an animator's AnimationError). `message` may
    name the exception's attributes, as `{exc.limit_s}`. A retryable failure is raised again for Celery
    to retry; the job fails with its code and message only once the retries are spent.
    """

    raised: tuple[type[BaseException], ...]
    code: ErrorCode | None = None
    message: str = ""
    retryable: bool = False
    when: Callable[[BaseException], bool] | None = None

    def matches(self, exc: BaseException) -> bool:
        return isinstance(exc, self.raised) and (self.when is None or self.when(exc))

    def describe(self, exc: BaseException) -> tuple[str, str]:
        """(code, message) for the job's row."""
        if self.code is None:
            return getattr(exc, "code", ErrorCode.INTERNAL_ERROR.value), getattr(exc, "message", str(exc))
        return self.code.value, self.message.format(exc=exc)


# Every way a job can fail, by what was raised; the first row that matches decides. The steps of
# animate_job raise these types for what they catch (a KeyError from the store is PhotoMissing, one
# from the animator an internal error).
FAILURES: tuple[Failure, ...] = (
    Failure(
        (AnimatorSetupFailed,), ErrorCode.ANIMATOR_UNAVAILABLE, "The {exc.animator} animator could not start."
    ),
    Failure((PhotoMissing,), ErrorCode.PHOTO_MISSING, "The uploaded photo is no longer stored."),
    Failure((PhotoUnreadable,), ErrorCode.PHOTO_UNREADABLE, "The stored photo could not be read."),
    Failure((TimedOut,), ErrorCode.TIMEOUT, "The animation ran past {exc.limit_s:g} s."),
    Failure((RetryableAnimationError,), retryable=True),
    Failure((AnimationError,)),
    Failure(
        TRANSIENT_ERRORS,
        ErrorCode.UNAVAILABLE,
        "Storage or database stayed unreachable; please try again.",
        retryable=True,
    ),
    # Recognised by name and words, so it comes after every row that is matched by type.
    Failure(
        (Exception,),
        ErrorCode.OUT_OF_MEMORY,
        "The worker ran out of memory; try a smaller photo.",
        when=is_out_of_memory,
    ),
    Failure((Exception,), ErrorCode.INTERNAL_ERROR, "The animation failed unexpectedly."),
)

# What the Celery task retries (autoretry_for): the retryable rows above, nothing else.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = tuple(
    t for f in FAILURES if f.retryable for t in f.raised
)


def failure_for(exc: BaseException) -> Failure:
    """The first row of FAILURES that matches; every Exception matches one."""
    return next(f for f in FAILURES if f.matches(exc))


# Where each stage sits on the job's 0-1 progress bar.
STAGE_SPAN: dict[str, tuple[float, float]] = {
    Stage.ANALYZING.value: (0.0, 0.1),
    Stage.ANIMATING.value: (0.1, 0.75),
    Stage.DECODING.value: (0.75, 0.85),
    Stage.POSTPROCESSING.value: (0.85, 0.9),
    Stage.ENCODING.value: (0.9, 0.94),
    Stage.CHECKING.value: (0.94, 0.98),
    Stage.STORING.value: (0.98, 1.0),
}

Sessions = Callable[[], AbstractContextManager[Session]]


class JobProgress:
    """The render's progress callback: writes stage + progress to the job row and stops on cancel.

    Writes are throttled (a stage change or 1.0 always goes through) so a fast animator does not turn
    into a stream of UPDATEs. Each write also refreshes the heartbeat the reconciler watches.
    """

    def __init__(
        self,
        sessions: Sessions,
        job_id: str,
        min_interval_s: float = 0.2,
        on_write: Callable[[Session], None] | None = None,
        attempt: int | None = None,
    ) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.attempt = attempt  # the claim this run holds: a superseded run is told to stop
        self.min_interval_s = min_interval_s
        self.on_write = on_write  # after each written update, e.g. the throttled `progress` webhook
        self._stage: str | None = None
        self._last = 0.0

    def __call__(self, stage: Stage | str, fraction: float, detail: str = "") -> None:
        stage = Stage(stage).value
        now = time.monotonic()
        if stage == self._stage and fraction < 1.0 and now - self._last < self.min_interval_s:
            return
        self._stage, self._last = stage, now
        lo, hi = STAGE_SPAN.get(stage, (0.0, 1.0))
        overall = lo + (hi - lo) * max(0.0, min(1.0, fraction))
        with self.sessions() as session:
            stop = jobs.report_progress(session, self.job_id, stage, overall, detail, attempt=self.attempt)
            if not stop and self.on_write is not None:
                self.on_write(session)
        if stop:
            raise Canceled(f"job {self.job_id} was canceled")


@contextmanager
def time_limits(soft_s: float, hard_s: float, on_hard: Callable[[], None]) -> Iterator[None]:
    """Soft limit: SoftTimeLimitExceeded raised in the task. Hard limit: `on_hard`, then the process exits.

    Celery's solo pool (one process per GPU) does not enforce time limits itself, so the task does.
    The hard limit catches a step stuck in native code that never returns to Python; the supervisor
    (compose `restart`, `vivify up`) starts a fresh process.
    """

    def _soft(_signum: int, _frame: Any) -> None:
        raise SoftTimeLimitExceeded(f"soft time limit ({soft_s:g} s) exceeded")

    def _hard() -> None:
        try:
            on_hard()
        finally:
            log.critical("hard time limit (%g s) exceeded: exiting the worker process", hard_s)
            os._exit(70)

    use_alarm = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGALRM, _soft) if use_alarm else None
    if use_alarm:
        signal.setitimer(signal.ITIMER_REAL, soft_s)
    watchdog = threading.Timer(hard_s, _hard)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def default_sessions(settings: Settings) -> Sessions:
    factory = session_factory(settings.resolved_database_url)

    @contextmanager
    def sessions() -> Iterator[Session]:
        with factory() as session:
            yield session

    return sessions


@dataclass(frozen=True)
class Claimed:
    """What the render needs from a claimed job's row, read while the claim's session was open."""

    photo_key: str
    motion: str | None
    seed: int
    events: JobEvents
    attempt: int  # this run's fence (jobs.claim)
    curves: dict[str, Any] | None = None  # recorded curves (RecordedMotion.to_json): then the motion
    duration_s: float | None = None  # the clip's length as asked (None: the animator's default)
    resolution: str = HD  # hd or 4k (models.clip_shape)
    faces: list[dict[str, Any]] | None = None  # the faces chosen to move, by box; None: every one


def setup_animator(settings: Settings) -> Animator:
    """The process's animator, set up on first use; AnimatorSetupFailed if it cannot be."""
    try:
        return model_cache.get_animator(settings)
    except Exception as exc:
        log.exception("animator %s could not be set up", settings.animator)
        raise AnimatorSetupFailed(settings.animator) from exc


def setup_guard(settings: Settings) -> Guard:
    """The process's clip guard (the clip check's models), set up on first use; AnimatorSetupFailed (the
    job cannot be rendered as promised) if it cannot be."""
    try:
        return model_cache.get_guard(settings)
    except Exception as exc:
        log.exception("the clip check could not be set up")
        raise AnimatorSetupFailed(settings.animator) from exc


def job_ending(settings: Settings, store: ObjectStore) -> JobEnding:
    """How this worker ends jobs: its Prometheus counters, its Celery app for the events."""
    return JobEnding(settings, celery=worker_webhooks.app, store=store, count=metrics.record_job)


def claim(
    sessions: Sessions, job_id: str, worker: str, settings: Settings, *, start: bool = True
) -> Claimed | None:
    """Mark the job running on this worker and, with `start`, send its `start` event; None if it is
    final, gone or running elsewhere."""
    with sessions() as session:
        job = jobs.claim(session, job_id, worker, take_over_after_s=settings.stale_job_after_s)
        if job is None:
            log.info("job %s is final, gone or running elsewhere: skipped", job_id)
            return None
        events = JobEvents(session, job, settings)
        if start:
            events.start(session)
        return Claimed(
            job.photo_key or "",
            job.motion,
            job.seed,
            events,
            job.attempts,
            job.motion_curves,
            job.duration_s,
            job.resolution,
            job.faces,
        )


def load_photo(store: ObjectStore, key: str) -> tuple[Image.Image, str]:
    """The job's photo, decoded, and its bytes' SHA-256 (what its kept rigs are found by); PhotoMissing or
    PhotoUnreadable if it cannot be."""
    try:
        data = store.get(key)
        photo = Image.open(io.BytesIO(data))
        photo.load()
    except KeyError:
        raise PhotoMissing(key) from None
    except (OSError, ValueError) as exc:
        raise PhotoUnreadable(key) from exc
    return photo, photo_digest(data)


def kept_rig(store: ObjectStore, photo_sha256: str, animator: Animator) -> dict[str, Any] | None:
    """The photo check's rig of this photo, kept in the store at the animator's render size and face
    count (the portrait animator's; others rig nothing); None when none is kept, and the animator builds
    its own."""
    max_side, max_faces = getattr(animator, "max_side", None), getattr(animator, "max_faces", None)
    if not isinstance(max_side, int) or not isinstance(max_faces, int):
        return None
    from models.portrait.mesh import rig_name

    return read_rig(store, rig_key(photo_sha256, rig_name(max_side, max_faces)))


def recorded_curves(job: Claimed) -> RecordedMotion | None:
    """The job's recorded curves, checked again as stored; AnimationError bad_motion if they are not."""
    if job.curves is None:
        return None
    try:
        return RecordedMotion.from_json(job.curves)
    except CurvesError as exc:
        raise AnimationError("bad_motion", f"The recorded motion cannot be used: {exc}") from exc


def chosen_boxes(faces: list[dict[str, Any]] | None) -> tuple[FaceBox, ...] | None:
    """The boxes (x, y, w, h as fractions of the photo) of the faces the visitor chose to move."""
    if not faces:
        return None
    return tuple((float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in (f["box"] for f in faces))


def render(
    animator: Animator,
    guard: Guard,
    photo: Image.Image,
    job: Claimed,
    progress: JobProgress,
    settings: Settings,
    on_hard_limit: Callable[[TimedOut], None],
    rig: dict[str, Any] | None = None,
) -> Checked:
    """Render and check the clip (the guard's second try and fallback too) within the time limits, then
    report the STORING stage (a last cancel check). `rig`: the photo check's rig of this photo (kept_rig)."""
    soft_s, hard_s = settings.time_limits(getattr(animator, "time_limit_s", None))
    request = AnimationRequest(
        motion=job.motion,
        seed=job.seed,
        fps=24,
        duration_s=job.duration_s,
        resolution=job.resolution,
        curves=recorded_curves(job),
        rig=rig,
        faces=chosen_boxes(job.faces),
    )
    try:
        with time_limits(soft_s, hard_s, lambda: on_hard_limit(TimedOut(hard_s))):
            checked = guard.render(animator, photo, request, progress)
    except SoftTimeLimitExceeded:
        raise TimedOut(soft_s) from None
    except AnimationError as exc:
        if exc.retryable:
            raise RetryableAnimationError(exc.code, exc.message) from exc
        raise
    progress(Stage.STORING, 0.0, "")
    return checked


def store_clip(
    store: ObjectStore,
    sessions: Sessions,
    ending: JobEnding,
    job_id: str,
    checked: Checked,
    attempt: int | None = None,
) -> Outcome:
    """Write the clip and poster at the job's keys, then end the job as succeeded with its check
    ("skipped" if it ended otherwise meanwhile, or another run holds it now)."""
    clip = checked.clip
    t0 = time.perf_counter()
    vkey, pkey = video_key(job_id), poster_key(job_id)
    store.put(vkey, clip.mp4, "video/mp4")
    store.put(pkey, clip.poster_jpeg, "image/jpeg")
    gif = store_gif(store, job_id, clip.mp4, clip.width, clip.height)
    stage_seconds = {
        **clip.stage_seconds,
        Stage.CHECKING.value: checked.check.seconds,
        Stage.STORING.value: time.perf_counter() - t0,
    }
    video_info = {
        "codec": "h264",
        "width": clip.width,
        "height": clip.height,
        "fps": clip.fps,
        "frames": clip.frame_count,
        "duration_s": round(clip.duration_s, 3),
        "bytes": len(clip.mp4),
        "note": clip.note,
        "gif": gif,
    }
    with sessions() as session:
        return ending.succeeded(
            session,
            job_id,
            video_key=vkey,
            poster_key=pkey,
            video_info=video_info,
            stage_seconds=stage_seconds,
            clip_check=checked.check.to_json(),
            attempt=attempt,
        )


def store_gif(store: ObjectStore, job_id: str, mp4: bytes, width: int, height: int) -> dict[str, int] | None:
    """The clip as a GIF at the job's GIF key, and what it is (models.gif); None when none could be made
    or stored: the GIF is a convenience, and never fails the job."""
    from models.gif import make_gif

    try:
        gif = make_gif(mp4, width, height)
        store.put(gif_key(job_id), gif.data, "image/gif")
    except Exception as exc:
        log.warning("no GIF for job %s (%s): %s", job_id, type(exc).__name__, exc)
        return None
    return gif.to_json()


def record_failure(
    ending: JobEnding,
    sessions: Sessions,
    job_id: str,
    exc: BaseException,
    *,
    retries_spent: bool = False,
    attempt: int | None = None,
    exiting: bool = False,
) -> Outcome:
    """End the job as FAILURES says for `exc`. A retryable failure is raised again, for Celery to retry,
    until its retries are spent. `exiting`: the hard time limit, just before the process exits."""
    failure = failure_for(exc)
    if failure.retryable and not retries_spent:
        if attempt is not None:
            try:  # back in line, so Celery's retry may run on any worker (else: the reconciler's re-send)
                with sessions() as session:
                    jobs.release(session, job_id, attempt)
            except Exception:
                log.info("job %s: not released for its retry (database unreachable)", job_id)
        raise exc
    if failure.code is ErrorCode.OUT_OF_MEMORY:
        model_cache.free_device_memory()  # so the next job gets the memory this one held
    elif failure.code is ErrorCode.INTERNAL_ERROR:
        log.error("job %s: unexpected error", job_id, exc_info=exc)
    code, message = failure.describe(exc)
    check = getattr(exc, "check", None)  # a ClipCheckFailed carries the figures of the last clip
    with sessions() as session:
        if failure.code is ErrorCode.TIMEOUT:
            return ending.timed_out(session, job_id, message, attempt=attempt, exiting=exiting)
        clip_check = check.to_json() if check is not None else None
        return ending.failed(session, job_id, code, message, attempt=attempt, clip_check=clip_check)


def animate_job(
    job_id: str,
    *,
    worker: str,
    settings: Settings | None = None,
    store: ObjectStore | None = None,
    sessions: Sessions | None = None,
    animator: Animator | None = None,
    guard: Guard | None = None,
    progress_interval_s: float = 0.2,
) -> str:
    """Run one job to a final status: claim, load, render, store. Returns what happened: succeeded,
    failed, canceled or skipped.

    Retryable errors (store or database unreachable) propagate so the Celery task retries them.
    `animator` and `guard` default to the process's cached ones; tests pass their own.
    """
    settings = settings or get_settings()
    store = store or get_store()
    sessions = sessions or default_sessions(settings)
    ending = job_ending(settings, store)

    # Set up before claiming, so a slow first load never looks like a stale running job.
    try:
        animator = animator or setup_animator(settings)
        guard = guard or setup_guard(settings)
    except AnimatorSetupFailed as exc:
        # Claimed first all the same (no `start`: it never starts), so a job another worker runs is left be.
        failed = claim(sessions, job_id, worker, settings, start=False)
        if failed is None:
            return "skipped"
        return record_failure(ending, sessions, job_id, exc, attempt=failed.attempt)

    job = claim(sessions, job_id, worker, settings)
    if job is None:
        return "skipped"
    progress = JobProgress(
        sessions,
        job_id,
        min_interval_s=progress_interval_s,
        on_write=job.events.progress,
        attempt=job.attempt,
    )

    def on_hard_limit(exc: TimedOut) -> None:  # from the watchdog thread, just before the process exits
        record_failure(ending, sessions, job_id, exc, attempt=job.attempt, exiting=True)

    try:
        photo, digest = load_photo(store, job.photo_key)
        # The kept rig is the live view's, at HD: a 4K clip is rigged at its own size.
        rig = kept_rig(store, digest, animator) if job.resolution == HD else None
        checked = render(animator, guard, photo, job, progress, settings, on_hard_limit, rig)
        return store_clip(store, sessions, ending, job_id, checked, attempt=job.attempt)
    except Canceled:  # asked to, or superseded: then the ending records nothing
        with sessions() as session:
            return ending.canceled(session, job_id, attempt=job.attempt)
    except Exception as exc:
        return record_failure(ending, sessions, job_id, exc, attempt=job.attempt)


class AnimateTask(Task):
    """Fails the job when retries of a retryable error are spent (the reconciler is the backstop)."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if not isinstance(exc, RETRYABLE_ERRORS) or not args:
            return
        settings = get_settings()
        try:
            ending = job_ending(settings, get_store())
            record_failure(ending, default_sessions(settings), args[0], exc, retries_spent=True)
        except Exception:  # still unreachable: the reconciler fails it later
            log.warning("could not mark job %s failed after retries", args[0])


@app.task(
    name=TaskName.ANIMATE.value,
    bind=True,
    base=AnimateTask,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=RETRYABLE_ERRORS,
    max_retries=get_settings().task_max_retries,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
)
def animate(self: Task, job_id: str) -> str:
    with job_context(job_id):  # the job id on every log line of this job
        # The node name: an animate worker is one solo process per name (app/cli/supervisor.py), so a
        # claim under the same name is this process's own retry, never a parallel run.
        return animate_job(job_id, worker=self.request.hostname or f"worker-{os.getpid()}")
