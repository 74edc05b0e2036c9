"""A job's ending, in one place: succeeded, failed, timed out, canceled or superseded.

Whoever ends a job calls JobEnding: the worker's run, the job service's cancel of a queued job and the
reconciler (a worker lost). So the ending cannot drift between paths. An ending
- records the final state: one conditional UPDATE, fenced by the run's attempt where a run ends it
  (app.core.jobs), so a job ends once, whoever races for it;
- counts it in the caller's metrics (the worker's Prometheus counters; the web tier counts jobs by
  status from the table when it is scraped, so it passes none);
- sends the `completed` webhook under the job's one id for it (webhooks.event_id), and records that the
  broker has it (Job.completed_event_at), so the reconciler re-sends only an event that never left;
- cleans up: a clip stored for a job that ended otherwise meanwhile is removed again.

A superseded run (another claim took the job over, or it ended while the run rendered) records nothing,
counts nothing and sends nothing: the job is someone else's to end. No ending gives the allowance back:
a job counts against it from its submit, however it ends.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol

from celery import Celery
from sqlalchemy.orm import Session

from app.core import jobs, webhooks
from app.core.config import Settings
from app.core.errors import ErrorCode
from app.core.queue import enqueue_webhook
from app.core.schemas import job_view
from app.core.storage import ObjectStore, gif_key
from app.core.tables import FINAL_STATUSES, Job, JobStatus

log = logging.getLogger(__name__)

Outcome = Literal["succeeded", "failed", "canceled", "skipped"]


class Count(Protocol):
    """A metrics sink for a job that just ended (worker.metrics.record_job)."""

    def __call__(self, session: Session, job_id: str) -> None: ...


class JobEnding:
    """Ends jobs for one process: `celery` sends the events (None: the process-wide producer), `store`
    holds the clips to clean up, `count` records the metrics (None: this process keeps none)."""

    def __init__(
        self,
        settings: Settings,
        *,
        celery: Celery | None = None,
        store: ObjectStore | None = None,
        count: Count | None = None,
    ) -> None:
        self.settings = settings
        self.celery = celery
        self.store = store
        self.count = count

    def succeeded(
        self,
        session: Session,
        job_id: str,
        *,
        video_key: str,
        poster_key: str,
        video_info: dict[str, Any],
        stage_seconds: dict[str, float],
        clip_check: dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> Outcome:
        """The clip and poster (and its GIF) are stored at the job's keys: the job succeeded. If it was
        deleted or ended while the run rendered, those objects go again; if another run holds it now, they
        are its keys too and stay."""
        if jobs.succeed(
            session,
            job_id,
            video_key=video_key,
            poster_key=poster_key,
            video_info=video_info,
            stage_seconds=stage_seconds,
            clip_check=clip_check,
            attempt=attempt,
        ):
            log.info("job %s succeeded (%s bytes)", job_id, video_info.get("bytes"))
            return self._ended(session, job_id, "succeeded")
        current = session.get(Job, job_id)
        if self.store is not None and (current is None or current.status in _ENDED_OTHERWISE):
            self.store.delete(video_key)
            self.store.delete(poster_key)
            self.store.delete(gif_key(job_id))
        return self.superseded(job_id, "success")

    def failed(
        self,
        session: Session,
        job_id: str,
        code: str,
        message: str,
        *,
        attempt: int | None = None,
        clip_check: dict[str, Any] | None = None,
    ) -> Outcome:
        """The job failed with `code` and `message` (`clip_check`: the figures of a clip that failed the
        check). Without `attempt` (the reconciler, a task whose retries are spent) any queued or running
        job fails."""
        if not jobs.fail(session, job_id, code, message, attempt=attempt, clip_check=clip_check):
            return self.superseded(job_id, code)
        log.info("job %s failed: %s", job_id, code)
        return self._ended(session, job_id, "failed")

    def timed_out(
        self, session: Session, job_id: str, message: str, *, attempt: int | None, exiting: bool = False
    ) -> Outcome:
        """The render ran past its time limit. `exiting`: the worker's hard limit, from a watchdog thread
        just before the process exits; only the state is recorded (the broker may not answer in time),
        and the reconciler sends the `completed` event."""
        if exiting:
            if not jobs.fail(session, job_id, ErrorCode.TIMEOUT.value, message, attempt=attempt):
                return self.superseded(job_id, ErrorCode.TIMEOUT.value)
            return "failed"
        return self.failed(session, job_id, ErrorCode.TIMEOUT.value, message, attempt=attempt)

    def canceled(self, session: Session, job_id: str, *, attempt: int | None = None) -> Outcome:
        """The job is canceled: a queued one by the service at once, a running one by its run when it
        stops between steps."""
        if not jobs.mark_canceled(session, job_id, attempt=attempt):
            return self.superseded(job_id, "cancel")
        log.info("job %s canceled", job_id)
        return self._ended(session, job_id, "canceled")

    def superseded(self, job_id: str, what: str) -> Outcome:
        """This run's ending was not recorded: the job ended otherwise, or another run holds it now."""
        log.info("job %s: %s not recorded, the job ended or another run holds it", job_id, what)
        return "skipped"

    def announce(self, session: Session, job_id: str) -> None:
        """Send a final job's `completed` event, if its filter wants it, and record that the broker has it
        (or that none is wanted). Never raises: an event the broker refused is re-sent by the reconciler
        under the same id, which the receiver drops if it came after all."""
        try:
            job = session.get(Job, job_id)
            if job is None or not job.webhook_url or job.status not in FINAL_STATUSES:
                return
            session.refresh(job)
            if "completed" in (job.webhook_events or webhooks.parse_events(None)):
                payload = job_view(session, job).model_dump(mode="json")
                msg_id = webhooks.event_id(self.settings.webhook_signing_key, job_id, "completed")
                enqueue_webhook(job.webhook_url, "completed", payload, msg_id, celery=self.celery)
            jobs.mark_completed_event(session, job_id)
        except Exception as exc:  # the job has ended whatever happens to its webhook
            log.warning("job %s: completed webhook not enqueued (%s)", job_id, type(exc).__name__)

    def _ended(self, session: Session, job_id: str, outcome: Outcome) -> Outcome:
        """After the final state is recorded: the metrics, then the event. Neither can undo the ending."""
        if self.count is not None:
            try:
                self.count(session, job_id)
            except Exception as exc:
                log.warning("job %s: not counted in the metrics (%s)", job_id, type(exc).__name__)
        self.announce(session, job_id)
        return outcome


_ENDED_OTHERWISE = (JobStatus.FAILED, JobStatus.CANCELED)
