"""The animate task against a real SQLite database and local store, called the way the worker calls it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image

from app.core import jobs
from app.core.storage import LocalStore, StorageUnavailable, poster_key, video_key
from app.core.tables import Job, utcnow
from models.base import AnimationError, AnimationRequest, Frames, ProgressCallback, Stage
from models.push_in import PushInAnimator
from models.video import probe
from worker import model_cache
from worker.tasks import JobProgress, animate_job, is_out_of_memory, store_gif


def stored(store: LocalStore) -> list[str]:
    """Every key in the store."""
    keys = store.keys()
    return list(keys)


class CountingAnimator:
    """Reports one ANIMATING step per frame; `on_step` lets a test act between steps."""

    name = "counting"

    def __init__(self, steps: int = 12, on_step: Callable[[int], None] | None = None) -> None:
        self.steps = steps
        self.on_step = on_step
        self.reported = 0

    def setup(self) -> None:
        pass

    def animate(self, photo: Image.Image, request: AnimationRequest, progress: ProgressCallback) -> Frames:
        for i in range(self.steps):
            if self.on_step:
                self.on_step(i)
            self.reported = i + 1
            progress(Stage.ANIMATING, (i + 1) / self.steps, f"{i + 1}/{self.steps}")
        frames = np.repeat(np.asarray(photo.resize((32, 32)))[None], 72, axis=0)
        return Frames(frames=frames, fps=24)


class RaisingAnimator(CountingAnimator):
    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def animate(self, photo: Image.Image, request: AnimationRequest, progress: ProgressCallback) -> Frames:
        progress(Stage.ANALYZING, 0.5, "")
        raise self.exc


def run(job_id: str, settings, store, sessions, animator=None, worker: str = "w1") -> str:
    return animate_job(
        job_id,
        worker=worker,
        settings=settings,
        store=store,
        sessions=sessions,
        animator=animator or PushInAnimator(max_side=64),
        progress_interval_s=0.0,
    )


def job_objects(store: LocalStore, job_id: str) -> set[str]:
    return {k for k in stored(store) if k.startswith(f"jobs/{job_id}/")}


def test_job_succeeds_with_a_real_clip_at_the_deterministic_keys(
    settings, store, sessions, make_job, load_job
):
    job_id = make_job(motion="subtle")
    assert run(job_id, settings, store, sessions) == "succeeded"
    job = load_job(job_id)
    assert (job.status, job.stage, job.progress, job.attempts) == ("succeeded", "done", 1.0, 1)
    assert (job.video_key, job.poster_key) == (video_key(job_id), poster_key(job_id))
    info = probe(store.get(job.video_key))
    assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0)
    assert 3.0 <= info.duration_s <= 5.0
    assert job.video_info["width"] == info.width and job.video_info["frames"] == info.frame_count
    assert job.video_info["bytes"] == len(store.get(job.video_key))
    assert {"animating", "encoding", "storing"} <= set(job.stage_seconds)
    assert store.get(job.poster_key)[:2] == b"\xff\xd8"  # a JPEG


@pytest.mark.parametrize("final", ["succeeded", "failed", "canceled"])
def test_a_final_job_is_skipped_and_nothing_is_written(settings, store, sessions, make_job, load_job, final):
    job_id = make_job(status=final)
    animator = CountingAnimator()
    assert run(job_id, settings, store, sessions, animator) == "skipped"
    assert animator.reported == 0
    assert job_objects(store, job_id) == {f"jobs/{job_id}/photo.jpg"}
    assert load_job(job_id).status == final


def test_a_redelivered_task_never_writes_a_second_clip(settings, store, sessions, make_job, load_job):
    job_id = make_job()
    assert run(job_id, settings, store, sessions) == "succeeded"
    first = store.get(video_key(job_id))
    finished_at = load_job(job_id).finished_at
    assert run(job_id, settings, store, sessions, worker="w2") == "skipped"
    assert job_objects(store, job_id) == {
        f"jobs/{job_id}/{n}" for n in ("photo.jpg", "clip.mp4", "poster.jpg", "clip.gif")
    }
    assert store.get(video_key(job_id)) == first
    assert load_job(job_id).finished_at == finished_at


def test_a_finished_clip_comes_with_its_gif(settings, store, sessions, make_job, load_job):
    job_id = make_job()
    assert run(job_id, settings, store, sessions) == "succeeded"
    info = load_job(job_id).video_info["gif"]
    data = store.get(f"jobs/{job_id}/clip.gif")
    assert data.startswith(b"GIF89a") and info["bytes"] == len(data)
    assert max(info["width"], info["height"]) <= 480 and info["bytes"] <= 10 * 1024 * 1024


def test_a_gif_that_cannot_be_made_is_left_out_and_stores_nothing(store):
    assert store_gif(store, "nogif", b"these bytes are no video", 64, 64) is None
    assert not store.exists("jobs/nogif/clip.gif")


def test_a_job_whose_worker_died_is_finished_by_the_redelivery(settings, store, sessions, make_job, load_job):
    job_id = make_job()
    with sessions() as session:  # the first worker claimed it, then vanished: no heartbeat since
        jobs.claim(session, job_id, "dead-worker")
        session.get(Job, job_id).heartbeat_at = utcnow() - timedelta(seconds=settings.stale_job_after_s + 1)
        session.commit()
    assert run(job_id, settings, store, sessions, worker="w2") == "succeeded"
    job = load_job(job_id)
    assert (job.status, job.attempts, job.worker) == ("succeeded", 2, "w2")
    assert len([k for k in job_objects(store, job_id) if k.endswith(".mp4")]) == 1


def test_a_duplicate_message_never_starts_a_second_run_beside_a_live_one(
    settings, store, sessions, make_job, load_job
):
    """A reconciler re-send and a broker redelivery of one job can reach two workers; the job's live run
    (a fresh heartbeat) keeps it, and the other skips without animating."""
    job_id = make_job()
    with sessions() as session:
        jobs.claim(session, job_id, "w1")  # running on w1, heartbeat now
    animator = CountingAnimator()
    assert run(job_id, settings, store, sessions, animator, worker="w2") == "skipped"
    assert animator.reported == 0
    job = load_job(job_id)
    assert (job.status, job.attempts, job.worker) == ("running", 1, "w1")
    # The same process may take its own job again (a Celery retry after a storage error).
    assert run(job_id, settings, store, sessions, worker="w1") == "succeeded"
    assert load_job(job_id).attempts == 2


def test_a_superseded_run_can_no_longer_write(settings, store, sessions, make_job, load_job):
    """Each claim fences the runs before it: the old run's progress tells it to stop, and its success,
    failure or cancel are not recorded."""
    job_id = make_job()
    with sessions() as session:
        old = jobs.claim(session, job_id, "slow-worker")
        assert old is not None
        old_attempt = old.attempts
        session.get(Job, job_id).heartbeat_at = utcnow() - timedelta(seconds=settings.stale_job_after_s + 1)
        session.commit()
        new = jobs.claim(session, job_id, "w2", take_over_after_s=settings.stale_job_after_s)
        assert new is not None and new.attempts == old_attempt + 1
        assert jobs.report_progress(session, job_id, "animating", 0.5, attempt=old_attempt)  # stop
        assert not jobs.report_progress(session, job_id, "animating", 0.5, attempt=new.attempts)
        info = {"video_key": "v", "poster_key": "p", "video_info": {}, "stage_seconds": {}}
        assert not jobs.succeed(session, job_id, **info, attempt=old_attempt)
        assert not jobs.fail(session, job_id, "timeout", "late", attempt=old_attempt)
        assert not jobs.mark_canceled(session, job_id, attempt=old_attempt)
        assert load_job(job_id).status == "running"
        assert jobs.succeed(session, job_id, **info, attempt=new.attempts)
    assert load_job(job_id).status == "succeeded"


def test_cancel_stops_the_animator_within_one_step(settings, store, sessions, make_job, load_job):
    job_id = make_job()

    def cancel_at(step: int) -> None:
        if step == 3:
            with sessions() as session:
                assert jobs.request_stop(session, job_id)

    animator = CountingAnimator(steps=50, on_step=cancel_at)
    assert run(job_id, settings, store, sessions, animator) == "canceled"
    assert animator.reported == 4  # the step during which cancel arrived reports, then it stops
    job = load_job(job_id)
    assert job.status == "canceled" and job.finished_at is not None
    assert job_objects(store, job_id) == {f"jobs/{job_id}/photo.jpg"}


def test_a_deleted_job_stops_its_render_and_leaves_no_clip(settings, store, sessions, make_job, load_job):
    job_id = make_job()

    def delete_at(step: int) -> None:
        if step == 2:
            with sessions() as session:
                session.delete(session.get(Job, job_id))
                session.commit()

    animator = CountingAnimator(steps=20, on_step=delete_at)
    assert run(job_id, settings, store, sessions, animator) == "skipped"  # stopped; nothing to record
    assert animator.reported == 3
    assert load_job(job_id) is None
    assert not [k for k in job_objects(store, job_id) if not k.endswith("photo.jpg")]


def test_an_animation_error_fails_the_job_with_its_code(settings, store, sessions, make_job, load_job):
    job_id = make_job()
    animator = RaisingAnimator(AnimationError("no_face", "No face was found in the photo."))
    assert run(job_id, settings, store, sessions, animator) == "failed"
    job = load_job(job_id)
    assert (job.status, job.error_code, job.error_message) == (
        "failed",
        "no_face",
        "No face was found in the photo.",
    )
    assert job_objects(store, job_id) == {f"jobs/{job_id}/photo.jpg"}


class FakeCudaOOM(RuntimeError):
    pass


FakeCudaOOM.__name__ = "OutOfMemoryError"


def test_out_of_memory_fails_the_job_and_the_next_job_still_runs(
    settings, store, sessions, make_job, load_job
):
    assert is_out_of_memory(FakeCudaOOM("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(ValueError("bad"))
    oom_job, next_job = make_job(), make_job()
    oom = RaisingAnimator(FakeCudaOOM("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert run(oom_job, settings, store, sessions, oom) == "failed"
    assert load_job(oom_job).error_code == "out_of_memory"
    assert run(next_job, settings, store, sessions) == "succeeded"


def test_the_soft_time_limit_fails_the_job_with_timeout(settings, store, sessions, make_job, load_job):
    import time

    limited = settings.model_copy(update={"task_soft_time_limit_s": 1, "task_time_limit_s": 30})
    job_id = make_job()
    slow = CountingAnimator(steps=100, on_step=lambda i: time.sleep(0.05))
    assert run(job_id, limited, store, sessions, slow) == "failed"
    job = load_job(job_id)
    assert job.error_code == "timeout" and "1 s" in job.error_message
    assert 0 < slow.reported < 60  # stopped about one second in, long before its 100 steps (5+ s)
    # The process goes on. Under the usual limit: a real render can take over 1 s on a busy machine.
    assert run(make_job(), settings, store, sessions) == "succeeded"


def test_the_time_limit_follows_the_animator_when_unset(settings, store, sessions, make_job, load_job):
    """A diffusion family states its own limit (Wan's 14 B model needs minutes per clip): with the
    settings' limits unset the task uses it, here an animator that allows itself one second."""
    import time

    unset = {"task_soft_time_limit_s": None, "task_time_limit_s": None, "broker_visibility_timeout_s": 3600}
    settings = settings.model_copy(update=unset)
    slow = CountingAnimator(steps=100, on_step=lambda i: time.sleep(0.05))
    slow.time_limit_s = 1.0
    job_id = make_job()
    assert run(job_id, settings, store, sessions, slow) == "failed"
    job = load_job(job_id)
    assert job.error_code == "timeout" and "past 1 s" in job.error_message
    assert 0 < slow.reported < 60


def test_an_unexpected_error_fails_the_job_without_leaking_details(
    settings, store, sessions, make_job, load_job
):
    job_id = make_job()
    assert (
        run(job_id, settings, store, sessions, RaisingAnimator(KeyError("secret/internal/path"))) == "failed"
    )
    job = load_job(job_id)
    assert job.error_code == "internal_error" and "secret" not in job.error_message


def test_a_missing_photo_fails_the_job(settings, store, sessions, make_job, load_job):
    job_id = make_job()
    store.delete(f"jobs/{job_id}/photo.jpg")
    assert run(job_id, settings, store, sessions) == "failed"
    assert load_job(job_id).error_code == "photo_missing"


def test_a_storage_outage_propagates_for_retry_and_leaves_the_job_unfinished(
    settings, store, sessions, make_job, load_job
):
    class DownStore(LocalStore):
        def put(self, key: str, data: bytes, content_type: str) -> None:
            raise StorageUnavailable("connection refused")

    job_id = make_job()
    with pytest.raises(StorageUnavailable):
        run(job_id, settings, DownStore(store.root), sessions)
    job = load_job(job_id)
    assert job.status == "queued" and job.video_key is None  # never succeeded without its clip...
    # ...and back in line, so Celery's retry finishes it on whichever worker takes it.
    assert run(job_id, settings, store, sessions, worker="w2") == "succeeded"


def test_progress_is_written_throttled_and_mapped_to_the_whole_job(settings, sessions, make_job, load_job):
    job_id = make_job()
    with sessions() as session:
        jobs.claim(session, job_id, "w1")
    progress = JobProgress(sessions, job_id, min_interval_s=60)
    progress(Stage.ANIMATING, 0.5, "6/12")
    job = load_job(job_id)
    assert (job.stage, job.stage_detail) == ("animating", "6/12")
    assert 0.1 < job.progress < 0.75
    progress(Stage.ANIMATING, 0.6, "7/12")  # throttled: same stage, too soon
    assert load_job(job_id).stage_detail == "6/12"
    progress(Stage.ENCODING, 0.0, "")  # a stage change always goes through
    assert load_job(job_id).stage == "encoding"


def test_the_animator_is_set_up_once_per_process(settings, monkeypatch):
    created = []

    class Probe(CountingAnimator):
        def setup(self) -> None:
            created.append(self)

    import models.registry

    monkeypatch.setattr(models.registry, "create_animator", lambda name, **kw: Probe())
    model_cache.reset()
    try:
        a = model_cache.get_animator(settings)
        b = model_cache.get_animator(settings)
        assert a is b and len(created) == 1
    finally:
        model_cache.reset()


def test_a_corrupt_stored_photo_fails_the_job_clearly(settings, store, sessions, make_job, load_job):
    job_id = make_job()
    store.put(f"jobs/{job_id}/photo.jpg", b"\xff\xd8 not really a jpeg", "image/jpeg")
    assert run(job_id, settings, store, sessions) == "failed"
    assert load_job(job_id).error_code == "photo_unreadable"


def test_the_hard_time_limit_fails_the_job_and_ends_a_stuck_process(tmp_path) -> None:
    """A step stuck where the soft limit cannot reach it: the watchdog records the failure, then exits."""
    import subprocess
    import sys
    import time

    marker = tmp_path / "failed"
    code = (
        "import time\n"
        "from worker.tasks import time_limits\n"
        f"with time_limits(30, 0.5, lambda: open({str(marker)!r}, 'w').write('timeout')):\n"
        "    time.sleep(20)\n"
    )
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 70, result.stderr
    assert marker.read_text() == "timeout"
    assert time.monotonic() - t0 < 15


def test_one_table_decides_every_failure() -> None:
    """FAILURES, first match wins: the steps' own errors, the animator's, the transient ones (retried,
    even when their words mention memory) and, last, out of memory before any other error."""
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.exc import OperationalError

    from worker.tasks import (
        RETRYABLE_ERRORS,
        AnimatorSetupFailed,
        PhotoMissing,
        RetryableAnimationError,
        TimedOut,
        failure_for,
    )

    def outcome(exc: BaseException) -> tuple[str, str, bool]:
        failure = failure_for(exc)
        return (*failure.describe(exc), failure.retryable)

    assert outcome(AnimatorSetupFailed("diffusion")) == (
        "animator_unavailable",
        "The diffusion animator could not start.",
        False,
    )
    assert outcome(PhotoMissing("jobs/x/photo.jpg"))[:2] == (
        "photo_missing",
        "The uploaded photo is no longer stored.",
    )
    assert outcome(TimedOut(1.5)) == ("timeout", "The animation ran past 1.5 s.", False)
    assert outcome(AnimationError("no_face", "No face {x}.")) == ("no_face", "No face {x}.", False)
    assert outcome(RetryableAnimationError("model_download", "Later.")) == ("model_download", "Later.", True)
    db_down = OperationalError("SELECT 1", {}, Exception("out of memory"))
    assert outcome(db_down)[0] == "unavailable" and outcome(db_down)[2]
    assert outcome(FakeCudaOOM("CUDA error"))[0] == "out_of_memory"
    assert outcome(KeyError("secret")) == ("internal_error", "The animation failed unexpectedly.", False)
    assert set(RETRYABLE_ERRORS) == {
        RetryableAnimationError,
        StorageUnavailable,
        OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        sa_exc.DisconnectionError,
    }
    assert AnimationError not in RETRYABLE_ERRORS and Exception not in RETRYABLE_ERRORS
