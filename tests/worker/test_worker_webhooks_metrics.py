"""Webhook events from the animate path (what is enqueued, how often) and their delivery task against a
real receiver on loopback; the worker's Prometheus metrics from a finished job."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.exceptions import Retry
from prometheus_client import generate_latest

from app.core.config import Settings
from app.core.endings import JobEnding
from app.core.queue import QueueName, TaskName
from app.core.storage import photo_key
from app.core.tables import Job, utcnow
from app.core.webhooks import event_id
from models.push_in import PushInAnimator
from tests.fixtures.webhook_receiver import WebhookReceiver, answers
from worker import metrics
from worker import webhooks as worker_webhooks
from worker.tasks import animate_job
from worker.webhooks import JobEvents, send_webhook


class Recorder:
    """Stands in for the Celery producer: records what would be sent to the broker."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_task(self, name: str, args: list[Any], queue: str, **_: Any) -> None:
        self.sent.append({"name": name, "args": args, "queue": queue})

    @property
    def events(self) -> list[str]:
        return [m["args"][1] for m in self.sent]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(worker_webhooks, "app", rec)  # the worker's producer of webhook events
    return rec


def test_a_job_sends_start_progress_and_completed_to_the_webhooks_queue(
    settings: Settings, store, sessions, make_job, load_job, recorder: Recorder
) -> None:
    job_id = make_job(
        webhook_url="http://127.0.0.1:9/hook", webhook_events=["start", "progress", "completed"]
    )
    assert animate_job(job_id, worker="w", settings=settings, store=store, sessions=sessions,
                       animator=PushInAnimator(max_side=64), progress_interval_s=0)  # fmt: skip
    assert {m["name"] for m in recorder.sent} == {TaskName.WEBHOOK}
    assert {m["queue"] for m in recorder.sent} == {QueueName.WEBHOOKS}
    events = recorder.events
    assert events[0] == "start" and events[-1] == "completed" and events.count("completed") == 1
    # Progress is throttled to one per webhook_progress_interval_s (2 s); this job takes about 1 s.
    assert 1 <= events.count("progress") <= 2
    url, _, payload, msg_id = recorder.sent[-1]["args"]
    assert url == "http://127.0.0.1:9/hook" and msg_id.startswith("msg_")
    assert payload["id"] == job_id and payload["status"] == "succeeded" and payload["progress"] == 1.0
    assert len({m["args"][3] for m in recorder.sent}) == len(recorder.sent)  # one id per event
    # `completed` has the job's one id for it, whoever sends it, and is recorded as handed over.
    assert msg_id == event_id(settings.webhook_signing_key, job_id, "completed")
    assert load_job(job_id).status == "succeeded" and load_job(job_id).completed_event_at is not None


def test_a_completed_event_the_broker_refused_stays_unannounced(
    settings: Settings, sessions, make_job, load_job
) -> None:
    class Down:
        def send_task(self, name: str, *args: Any, **kwargs: Any) -> None:
            raise ConnectionError("redis is down")

    job_id = make_job(webhook_url="http://127.0.0.1:9/h", status="succeeded", finished_at=utcnow())
    with sessions() as session:
        JobEnding(settings, celery=Down()).announce(session, job_id)  # type: ignore[arg-type]
    assert load_job(job_id).completed_event_at is None  # so the reconciler sends it again


def test_the_filter_decides_and_no_webhook_sends_nothing(
    settings: Settings, store, sessions, make_job, recorder: Recorder
) -> None:
    only_done = make_job(webhook_url="http://127.0.0.1:9/hook", webhook_events=["completed"])
    quiet = make_job()
    for job_id in (only_done, quiet):
        animate_job(job_id, worker="w", settings=settings, store=store, sessions=sessions,
                    animator=PushInAnimator(max_side=64), progress_interval_s=0)  # fmt: skip
        assert recorder.events == ["completed"]


def test_progress_events_are_throttled(settings: Settings, sessions, make_job, recorder: Recorder) -> None:
    now = [0.0]
    job_id = make_job(webhook_url="http://127.0.0.1:9/h", webhook_events=["progress"], status="running")
    with sessions() as session:
        events = JobEvents(session, session.get(Job, job_id), settings, clock=lambda: now[0])
        for t in (0.0, 0.5, 1.9, 2.0, 2.1, 4.5):
            now[0] = t
            events.progress(session)
    assert recorder.events == ["progress", "progress", "progress"]  # at 0, 2.0 and 4.5 s


def test_a_broker_failure_never_reaches_the_job(
    settings: Settings, sessions, make_job, load_job, caplog: pytest.LogCaptureFixture
) -> None:
    tried: list[str] = []

    class Down:
        def send_task(self, name: str, *args: Any, **kwargs: Any) -> None:
            tried.append(name)
            raise ConnectionError("redis is down")

    job_id = make_job(webhook_url="http://127.0.0.1:9/h", webhook_events=["start"])
    before = {c.key: getattr(load_job(job_id), c.key) for c in Job.__table__.columns}
    with sessions() as session:
        JobEvents(session, session.get(Job, job_id), settings, celery=Down()).start(session)  # no raise
    assert tried == [TaskName.WEBHOOK]  # the event was really attempted, and it failed
    after = {c.key: getattr(load_job(job_id), c.key) for c in Job.__table__.columns}
    assert after == before  # still queued, no failure, no error recorded: the row is untouched
    assert after["status"] == "queued" and after["error_code"] is None and after["finished_at"] is None
    assert "start webhook not enqueued (ConnectionError)" in caplog.text


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[list[int]], WebhookReceiver]]:
    made: list[WebhookReceiver] = []

    def make(statuses: list[int]) -> WebhookReceiver:
        made.append(WebhookReceiver(answers(statuses)))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def webhook_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings(
        _env_file=None, webhooks_allow_private=True, webhook_secret="whsec_c2VjcmV0", webhook_attempts=3
    )
    monkeypatch.setattr(worker_webhooks, "get_settings", lambda: s)
    return s


def test_delivery_is_signed_and_a_5xx_is_retried_through_celery(
    webhook_settings: Settings, receiver_factory
) -> None:
    from app.core.webhooks import verify

    rx = receiver_factory([503])
    payload = {"id": "job-1", "status": "running"}
    # A 503 is not slept on inside the worker: the task raises Retry and Celery sends it again later.
    with pytest.raises(Retry):
        send_webhook.apply(args=[rx.url, "start", payload, "msg_1"], throw=True)
    retried = send_webhook.s(rx.url, "start", payload, "msg_1").set(retries=1)  # the message Celery resends
    assert retried.apply().get() == "delivered"
    (h1, b1), (h2, b2) = ((d.headers, d.body) for d in rx.deliveries)
    assert h1["webhook-id"] == h2["webhook-id"] == "msg_1" and b1 == b2
    assert verify(webhook_settings.webhook_signing_key, h2, b2)
    assert json.loads(b2) == {"type": "start", "data": payload}


def test_retries_back_off_exponentially_up_to_a_cap() -> None:
    assert [worker_webhooks.retry_delay_s(n) for n in range(4)] == [1, 2, 4, 8]
    assert worker_webhooks.retry_delay_s(30) == worker_webhooks.RETRY_BACKOFF_MAX_S


def test_delivery_gives_up_after_the_attempts_and_never_retries_a_4xx(
    webhook_settings: Settings, receiver_factory
) -> None:
    rx = receiver_factory([400])
    assert send_webhook.apply(args=[rx.url, "start", {"id": "j"}, "m"]).get() == "rejected"
    down = receiver_factory([500, 500, 500])
    last = send_webhook.s(down.url, "completed", {"id": "j"}, "m2").set(retries=2)
    assert last.apply().get() == "gave_up"  # the 3rd attempt (webhook_attempts=3) is the last


def test_a_private_target_is_refused_at_delivery_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    strict = Settings(_env_file=None)
    monkeypatch.setattr(worker_webhooks, "get_settings", lambda: strict)
    assert send_webhook.apply(args=["http://127.0.0.1:1/h", "start", {"id": "j"}, "m"]).get() == "refused"


def test_worker_metrics_count_a_finished_job(
    settings: Settings, store, sessions, make_job, portrait_jpeg: bytes
) -> None:
    job_id = make_job(queue="animate.push-in")
    store.put(photo_key(job_id), portrait_jpeg, "image/jpeg")  # a face large enough to be described
    before = metrics.JOBS.labels("animate.push-in", "succeeded")._value.get()
    animate_job(job_id, worker="w", settings=settings, store=store, sessions=sessions,
                animator=PushInAnimator(max_side=256), progress_interval_s=0)  # fmt: skip
    failed = make_job(queue="animate.push-in", photo_key="jobs/none/photo.jpg")
    animate_job(failed, worker="w", settings=settings, store=store, sessions=sessions,
                animator=PushInAnimator(max_side=64))  # fmt: skip
    text = generate_latest(metrics.REGISTRY).decode()
    assert metrics.JOBS.labels("animate.push-in", "succeeded")._value.get() == before + 1
    assert 'vivify_worker_failures_total{code="photo_missing",queue="animate.push-in"}' in text
    assert 'vivify_worker_stage_seconds_count{queue="animate.push-in",stage="encoding"}' in text
    assert 'vivify_worker_queue_wait_seconds_count{queue="animate.push-in"}' in text
    assert "vivify_worker_gpu_max_memory_allocated_bytes 0.0" in text  # no torch imported here
    # The clip check's figures, by the animator that made the clip (a push-in of a face: its likeness).
    assert 'vivify_worker_clip_identity_distance_count{animator="push-in"}' in text
    assert 'vivify_worker_clip_jitter_count{animator="push-in"}' in text
