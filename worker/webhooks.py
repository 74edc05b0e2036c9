"""Webhook events of a job (start, progress, completed), sent by their own Celery task.

The animate task only *enqueues* an event (`JobEvents` for start and progress; the job's ending,
app.core.endings, for `completed`): a `vivify.webhook` message on the
`webhooks` queue carrying the URL, the event and the public Job JSON as it was at that moment. A
separate, light consumer (threads pool) delivers it, signed per Standard Webhooks (app/core/webhooks.py),
retrying 5xx/429/network errors with exponential backoff through Celery (no sleeping worker) a
bounded number of times. So a slow or dead receiver never delays an animation, and a delivery failure
never fails the job.

Each event keeps one `webhook-id` across its retries, so a receiver can drop duplicates; a job's
`start` and `completed` events have one id whoever sends them (webhooks.event_id). `completed` is
recorded once enqueued (Job.completed_event_at); the reconciler re-sends it for a job that ended with
none (the broker was down, or the worker died right after the commit), so it is never lost.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import httpx
from celery import Celery, Task

from app.core import webhooks
from app.core.config import Settings, get_settings
from app.core.queue import QueueName, TaskName
from app.core.schemas import job_view
from app.core.tables import Job
from worker.celery_app import app

log = logging.getLogger(__name__)

RETRY_BACKOFF_MAX_S = 300


def retry_delay_s(retries: int) -> int:
    """Seconds before the next attempt after `retries` retries: 1, 2, 4, ... up to RETRY_BACKOFF_MAX_S."""
    return min(RETRY_BACKOFF_MAX_S, 2**retries)


class JobEvents:
    """Enqueues a running job's `start` and `progress` events as its filter asks; progress at most every
    `interval_s`. (`completed` is the job's ending's: app.core.endings.)

    Never raises: an event that cannot be enqueued is logged and dropped.
    """

    def __init__(
        self,
        session: Any,
        job: Job,
        settings: Settings,
        celery: Celery | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.url = job.webhook_url
        self.events = set(job.webhook_events or webhooks.parse_events(None))
        self.job_id = job.id
        self.interval_s = settings.webhook_progress_interval_s
        self.key = settings.webhook_signing_key
        self.celery = celery or app
        self.clock = clock
        self._last_progress: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.url)

    def wants(self, event: str) -> bool:
        return self.active and event in self.events

    def start(self, session: Any) -> None:
        self._emit(session, "start")

    def progress(self, session: Any) -> None:
        if not self.wants("progress"):
            return
        now = self.clock()
        if self._last_progress is not None and now - self._last_progress < self.interval_s:
            return
        self._last_progress = now
        self._emit(session, "progress")

    def _emit(self, session: Any, event: str) -> bool:
        """Enqueue one event; False when it could not be (logged)."""
        if not self.wants(event):
            return False
        try:
            job = session.get(Job, self.job_id)
            if job is None:
                return False
            session.refresh(job)
            payload = job_view(session, job).model_dump(mode="json")
            if event == "progress":
                msg_id = "msg_" + secrets.token_urlsafe(12)
            else:
                msg_id = webhooks.event_id(self.key, self.job_id, event)
            self.celery.send_task(
                TaskName.WEBHOOK.value,
                args=[self.url, event, payload, msg_id],
                # What Celery logs for the task ("received", failures): the URL may hold a token.
                argsrepr=webhooks.celery_argsrepr(self.url or "", event, payload, msg_id),
                kwargsrepr="{}",
                queue=QueueName.WEBHOOKS.value,
                ignore_result=True,
            )
        except Exception as exc:  # the job goes on whatever happens to its webhook
            log.warning("job %s: %s webhook not enqueued (%s)", self.job_id, event, type(exc).__name__)
            return False
        return True


@app.task(name=TaskName.WEBHOOK.value, bind=True, acks_late=True, ignore_result=True, max_retries=None)
def send_webhook(self: Task, url: str, event: str, payload: dict[str, Any], msg_id: str) -> str:
    """Deliver one event; returns delivered, refused, rejected, gave_up or failed (never raises but
    Retry). Logs name the receiver by scheme://host[:port] only: the rest of the URL may be a secret."""
    settings = get_settings()
    job_id = payload.get("id")
    where = webhooks.redact_url(url)
    try:
        # deliver() checks the URL again and connects to the very address it checked: DNS may now
        # point the name somewhere private.
        webhooks.deliver(
            url,
            event,
            payload,
            settings.webhook_signing_key,
            timeout_s=settings.webhook_timeout_s,
            msg_id=msg_id,
            allow_private=settings.webhooks_allow_private,
        )
    except webhooks.WebhookRefused as exc:  # its message never holds the URL
        log.warning("job %s: %s webhook to %s refused: %s", job_id, event, where, exc)
        return "refused"
    except (httpx.HTTPError, OSError) as exc:
        failure = webhooks.describe(exc)
        if not webhooks.is_retryable(exc):
            log.warning("job %s: %s webhook to %s rejected (%s)", job_id, event, where, failure)
            return "rejected"
        if self.request.retries + 1 >= settings.webhook_attempts:
            log.warning(
                "job %s: %s webhook to %s gave up after %d attempts (%s)",
                job_id,
                event,
                where,
                self.request.retries + 1,
                failure,
            )
            return "gave_up"
        # Celery logs "retry: <exc>": hand it the description, not the httpx error that names the URL.
        raise self.retry(
            countdown=retry_delay_s(self.request.retries), exc=webhooks.AttemptFailed(failure)
        ) from None
    except Exception as exc:  # a bug; Celery's "raised unexpected" line would print a message with the URL
        log.error("job %s: %s webhook to %s failed (%s)", job_id, event, where, type(exc).__name__)
        return "failed"
    log.info("job %s: %s webhook to %s delivered", job_id, event, where)
    return "delivered"
