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
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from celery import Task
from PIL import Image
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from app.core import jobs
from app.core.config import Settings, get_settings
from app.core.db import session_factory
from app.core.logging import job_context
from app.core.queue import ANIMATE_TASK
from app.core.storage import ObjectStore, StorageUnavailable, get_store, poster_key, video_key
from app.core.tables import Job, JobStatus
from models.base import AnimationError, AnimationRequest, Animator, Canceled, Stage
from worker import metrics, model_cache
from worker.celery_app import app
from worker.webhooks import JobEvents

log = logging.getLogger(__name__)


class RetryableAnimationError(Exception):
    """An AnimationError the animator marked retryable (e.g. a model download that timed out)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)  # both in args, so Celery can pickle it across a retry
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


# Only these are worth another try: the store or the database was briefly unreachable, or the
# animator said so.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    RetryableAnimationError,
    StorageUnavailable,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)

# Where each stage sits on the job's 0-1 progress bar.
STAGE_SPAN: dict[str, tuple[float, float]] = {
    Stage.ANALYZING.value: (0.0, 0.1),
    Stage.ANIMATING.value: (0.1, 0.75),
    Stage.DECODING.value: (0.75, 0.85),
    Stage.POSTPROCESSING.value: (0.85, 0.9),
    Stage.ENCODING.value: (0.9, 0.97),
    Stage.STORING.value: (0.97, 1.0),
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
    ) -> None:
        self.sessions = sessions
        self.job_id = job_id
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
            stop = jobs.report_progress(session, self.job_id, stage, overall, detail)
            if not stop and self.on_write is not None:
                self.on_write(session)
        if stop:
            raise Canceled(f"job {self.job_id} was canceled")


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (or a CPU MemoryError), recognised without importing torch."""
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or "out of memory" in str(exc).lower()
    )


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


def _finish_failed(sessions: Sessions, job_id: str, code: str, message: str) -> str:
    with sessions() as session:
        jobs.fail(session, job_id, code, message)
    log.info("job %s failed: %s", job_id, code)
    return "failed"


def animate_job(
    job_id: str,
    *,
    worker: str,
    settings: Settings | None = None,
    store: ObjectStore | None = None,
    sessions: Sessions | None = None,
    animator: Animator | None = None,
    progress_interval_s: float = 0.2,
) -> str:
    """Run one job to a final status. Returns what happened: succeeded, failed, canceled or skipped.

    Retryable errors (store or database unreachable) propagate so the Celery task retries them.
    `animator` defaults to the process's cached one; tests pass their own.
    """
    settings = settings or get_settings()
    store = store or get_store()
    sessions = sessions or default_sessions(settings)

    # Set up before claiming, so a slow first load never looks like a stale running job.
    try:
        animator = animator or model_cache.get_animator(settings)
    except Exception:
        log.exception("animator %s could not be set up", settings.animator)
        with sessions() as session:
            if jobs.claim(session, job_id, worker) is None:
                return "skipped"
        return _finish_failed(
            sessions, job_id, "animator_unavailable", f"The {settings.animator} animator could not start."
        )
    with sessions() as session:
        job = jobs.claim(session, job_id, worker)
        if job is None:
            log.info("job %s is final or gone: skipped", job_id)
            return "skipped"
        photo_key, motion, seed = job.photo_key, job.motion, job.seed
        events = JobEvents(session, job, settings)
        events.start(session)

    try:
        photo = Image.open(io.BytesIO(store.get(photo_key or "")))
        photo.load()
    except KeyError:
        return _finish_failed(sessions, job_id, "photo_missing", "The uploaded photo is no longer stored.")
    except (OSError, ValueError):  # not an image any more (the web tier re-encoded it, so: corruption)
        return _finish_failed(sessions, job_id, "photo_unreadable", "The stored photo could not be read.")

    progress = JobProgress(sessions, job_id, min_interval_s=progress_interval_s, on_write=events.progress)
    request = AnimationRequest(motion=motion, seed=seed, fps=24)
    soft_s, hard_s = settings.time_limits(getattr(animator, "time_limit_s", None))

    def _timed_out_hard() -> None:
        with sessions() as session:
            jobs.fail(session, job_id, "timeout", f"The animation ran past {hard_s:g} s.")

    from models.render import render_clip

    try:
        with time_limits(soft_s, hard_s, _timed_out_hard):
            clip = render_clip(animator, photo, request, progress)
    except Canceled:
        with sessions() as session:
            jobs.mark_canceled(session, job_id)
        log.info("job %s canceled", job_id)
        return "canceled"
    except AnimationError as exc:
        if exc.retryable:
            raise RetryableAnimationError(exc.code, exc.message) from exc
        return _finish_failed(sessions, job_id, exc.code, exc.message)
    except SoftTimeLimitExceeded:
        return _finish_failed(sessions, job_id, "timeout", f"The animation ran past {soft_s:g} s.")
    except RETRYABLE_ERRORS:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            model_cache.free_device_memory()
            return _finish_failed(
                sessions, job_id, "out_of_memory", "The worker ran out of memory; try a smaller photo."
            )
        log.exception("job %s: unexpected error", job_id)
        return _finish_failed(sessions, job_id, "internal_error", "The animation failed unexpectedly.")

    try:
        progress(Stage.STORING, 0.0, "")
    except Canceled:
        with sessions() as session:
            jobs.mark_canceled(session, job_id)
        return "canceled"
    t0 = time.perf_counter()
    vkey, pkey = video_key(job_id), poster_key(job_id)
    store.put(vkey, clip.mp4, "video/mp4")
    store.put(pkey, clip.poster_jpeg, "image/jpeg")
    stage_seconds = {**clip.stage_seconds, Stage.STORING.value: time.perf_counter() - t0}
    video_info = {
        "codec": "h264",
        "width": clip.width,
        "height": clip.height,
        "fps": clip.fps,
        "frames": clip.frame_count,
        "duration_s": round(clip.duration_s, 3),
        "bytes": len(clip.mp4),
    }
    with sessions() as session:
        if jobs.succeed(
            session,
            job_id,
            video_key=vkey,
            poster_key=pkey,
            video_info=video_info,
            stage_seconds=stage_seconds,
        ):
            log.info("job %s succeeded (%d bytes)", job_id, len(clip.mp4))
            return "succeeded"
        current = session.get(Job, job_id)
        if current is None or current.status != "succeeded":
            # Deleted or ended while we rendered: do not leave a clip behind for it.
            store.delete(vkey)
            store.delete(pkey)
    return "skipped"


class AnimateTask(Task):
    """Marks the job failed when retries of a retryable error are spent (the reconciler is the backstop)."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if not isinstance(exc, RETRYABLE_ERRORS) or not args:
            return
        if isinstance(exc, RetryableAnimationError):
            code, message = exc.code, exc.message
        else:
            code, message = "unavailable", "Storage or database stayed unreachable; please try again."
        try:
            with default_sessions(get_settings())() as session:
                jobs.fail(session, args[0], code, message)
        except Exception:  # still unreachable: the reconciler fails it later
            log.warning("could not mark job %s failed after retries", args[0])
            return
        job_ended(args[0])


def job_ended(job_id: str, settings: Settings | None = None, sessions: Sessions | None = None) -> None:
    """After this worker brought a job to a final status: count it in the worker's metrics and send
    its `completed` webhook. Never raises: the job is already decided."""
    settings = settings or get_settings()
    try:
        with (sessions or default_sessions(settings))() as session:
            job = session.get(Job, job_id)
            if job is None or not JobStatus(job.status).is_final:
                return
            metrics.record_job(session, job_id)
            JobEvents(session, job, settings).completed(session)
    except Exception as exc:
        log.warning("job %s: end-of-job metrics/webhook skipped (%s)", job_id, type(exc).__name__)


@app.task(
    name=ANIMATE_TASK,
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
        outcome = animate_job(job_id, worker=self.request.hostname or f"worker-{os.getpid()}")
    if outcome != "skipped":  # a redelivered message for a final job: counted and announced already
        job_ended(job_id)
    return outcome
