"""Bounded retries of the Celery task, run eagerly through Celery's own retry machinery."""

from __future__ import annotations

import pytest

import worker.tasks as tasks
from app.core.storage import LocalStore, StorageUnavailable
from worker import model_cache


class FlakyStore(LocalStore):
    """Refuses the first `failures` writes, like an object store that is briefly down."""

    def __init__(self, root, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.refused = 0

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if self.refused < self.failures:
            self.refused += 1
            raise StorageUnavailable("connection refused")
        super().put(key, data, content_type)


@pytest.fixture
def wired(settings, monkeypatch):
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    model_cache.reset()
    yield
    model_cache.reset()


def test_a_retryable_storage_error_is_retried_until_the_job_succeeds(
    wired, store, monkeypatch, make_job, load_job
):
    flaky = FlakyStore(store.root, failures=2)
    monkeypatch.setattr(tasks, "get_store", lambda: flaky)
    job_id = make_job()
    result = tasks.animate.apply(args=[job_id])
    assert result.get() == "succeeded"
    job = load_job(job_id)
    assert (job.status, job.attempts, flaky.refused) == ("succeeded", 3, 2)
    assert store.exists(job.video_key)


def test_retries_are_bounded_and_then_the_job_fails_with_a_clear_code(
    wired, store, monkeypatch, make_job, load_job
):
    down = FlakyStore(store.root, failures=10**6)
    monkeypatch.setattr(tasks, "get_store", lambda: down)
    job_id = make_job()
    result = tasks.animate.apply(args=[job_id])
    assert isinstance(result.result, StorageUnavailable)
    assert down.refused == tasks.animate.max_retries + 1  # the first try and every retry, no more
    job = load_job(job_id)
    assert (job.status, job.error_code) == ("failed", "unavailable")
    assert job.video_key is None


def test_only_retryable_errors_are_retried() -> None:
    assert StorageUnavailable in tasks.animate.autoretry_for
    assert all(issubclass(e, Exception) for e in tasks.animate.autoretry_for)
    assert ValueError not in tasks.animate.autoretry_for and Exception not in tasks.animate.autoretry_for
    assert tasks.animate.acks_late and tasks.animate.reject_on_worker_lost
    assert tasks.animate.name == "vivify.animate"


def test_a_retryable_animation_error_is_retried_then_fails_with_its_own_code(
    wired, store, monkeypatch, make_job, load_job
):
    from models.base import AnimationError

    calls = []

    class Flaky:
        name = "flaky"

        def setup(self) -> None:
            pass

        def animate(self, photo, request, progress):
            calls.append(1)
            raise AnimationError("model_download", "The model could not be downloaded.", retryable=True)

    monkeypatch.setattr(tasks, "get_store", lambda: store)
    monkeypatch.setattr(tasks.model_cache, "get_animator", lambda settings: Flaky())
    job_id = make_job()
    tasks.animate.apply(args=[job_id])
    assert len(calls) == tasks.animate.max_retries + 1
    job = load_job(job_id)
    assert (job.status, job.error_code) == ("failed", "model_download")
