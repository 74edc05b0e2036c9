"""Where open jobs stand in their queue, and when their clips should be ready: read for many jobs at once.

A status poll used to run up to five queries for one queued job (its position twice, the queue's recent
run times, its live workers, the running jobs' progress), and a list of N jobs ran 5N. Here one statement
per queue reads the queue's figures and every listed queued job's position, and `schemas.job_out` only
formats: one job's GET is its lookup and one statement, and a list's count does not grow with its length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Subquery, func, select
from sqlalchemy.orm import Session

from app.core.queue import LONG_ANIMATORS, SHORT_ANIMATORS
from app.core.tables import FINAL_STATUSES, Job, JobStatus, utcnow

# A queue with no finished job to learn from guesses by its animator: the CPU animators make a 4 s HD
# clip, checked, in about 2-3 s (bench/RESULTS.md); a diffusion clip takes minutes on a GPU.
SHORT_RUN_S = 3.0
LONG_RUN_S = 120.0
DEFAULT_RUN_S = 20.0  # a plug-in animator: nothing known about it
RECENT_RUNS = 20  # the run times the estimate is the mean of
LIVE_WORKER_S = 120  # a worker that reported within this long is counted as serving the queue


@dataclass(frozen=True)
class Wait:
    queue_position: int | None = None  # 1 = next to start; None unless queued
    eta_s: float | None = None  # None once final


NO_WAIT = Wait()


def waits(session: Session, jobs: Sequence[Job]) -> dict[str, Wait]:
    """Each open job's Wait, by id (final jobs are left out: NO_WAIT). One statement per queue."""
    by_queue: dict[str, list[Job]] = {}
    for job in jobs:
        if JobStatus(job.status) not in FINAL_STATUSES:
            by_queue.setdefault(job.queue, []).append(job)
    out: dict[str, Wait] = {}
    for queue, members in by_queue.items():
        queued = [j for j in members if j.status == JobStatus.QUEUED]
        recent = _recent_runs(queue)
        running = (Job.status == JobStatus.RUNNING, Job.queue == queue)
        since = utcnow() - timedelta(seconds=LIVE_WORKER_S)
        figures = [
            select(func.avg(recent.c.run_s)).scalar_subquery(),
            select(func.count(func.distinct(Job.worker)))
            .where(Job.queue == queue, Job.heartbeat_at >= since, Job.worker.is_not(None))
            .scalar_subquery(),
            select(func.count()).where(*running).scalar_subquery(),
            select(func.max(Job.progress)).where(*running).scalar_subquery(),
        ] + [
            select(func.count())
            .where(Job.status == JobStatus.QUEUED, Job.queue == queue, Job.created_at < j.created_at)
            .scalar_subquery()
            for j in queued
        ]
        run_s_avg, live, n_running, most_done, *ahead = session.execute(select(*figures)).one()
        run_s = float(run_s_avg) if run_s_avg is not None else first_run_s(members[0].animator)
        workers = max(1, int(live or 0))
        # The soonest a worker frees up, when every worker is busy.
        soonest_free = run_s * (1.0 - float(most_done or 0.0)) if n_running and n_running >= workers else 0.0
        for job, before in zip(queued, ahead, strict=True):
            position = int(before or 0) + 1
            waves = (position - 1) // workers  # full batches of work ahead of this job
            out[job.id] = Wait(position, round(soonest_free + waves * run_s + run_s, 1))
        for job in members:
            if job.status == JobStatus.RUNNING:
                out[job.id] = Wait(None, round(run_s * (1.0 - (job.progress or 0.0)), 1))
    return out


def first_run_s(animator: str) -> float:
    """The run time guessed for an animator before any of its jobs finished."""
    if animator in SHORT_ANIMATORS:
        return SHORT_RUN_S
    return LONG_RUN_S if animator in LONG_ANIMATORS else DEFAULT_RUN_S


def run_estimate_s(session: Session, queue: str, animator: str) -> float:
    """How long one clip takes on this queue now: the mean of its recent runs, else the first guess. The
    same figure a job's ETA starts from, so the page promises what the jobs then say."""
    recent = recent_run_seconds(session, queue)
    return recent if recent is not None else first_run_s(animator)


def _recent_runs(queue: str) -> Subquery:
    """The run times of the queue's latest succeeded jobs (what the ETA is the mean of)."""
    return (
        select(Job.run_s)
        .where(Job.status == JobStatus.SUCCEEDED, Job.queue == queue, Job.run_s.is_not(None))
        .order_by(Job.finished_at.desc())
        .limit(RECENT_RUNS)
        .subquery()
    )


def recent_run_seconds(session: Session, queue: str) -> float | None:
    """The mean the queue's ETA uses (None before any job succeeded there), on its own."""
    recent = _recent_runs(queue)
    mean = session.scalar(select(func.avg(recent.c.run_s)))
    return None if mean is None else float(mean)


def wait_of(session: Session, job: Job) -> Wait:
    return waits(session, [job]).get(job.id, NO_WAIT)
