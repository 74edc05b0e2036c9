"""Prometheus metrics of one worker process, served on Settings.worker_metrics_port (0 = off).

Every number comes from the job row after the task ended (the row is the source of truth): final
status, error code, queue wait (created → started), run time (started → finished) and the clip's
per-stage seconds. The GPU gauge reads torch only when the animator already imported it.

One HTTP server per process: run workers with the solo pool (one process per GPU) and give each its
own port (`vivify worker --metrics-port`). A prefork pool's children would count in their own memory.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from sqlalchemy.orm import Session

from app.core.schemas import as_utc
from app.core.tables import FINAL_STATUSES, Job, JobStatus

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

# Seconds from a CPU preview (~1 s) to a long diffusion render (~10 min).
_TIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)

JOBS = Counter(
    "vivify_worker_jobs", "Jobs this worker ended, by final status.", ["queue", "status"], registry=REGISTRY
)
FAILURES = Counter(
    "vivify_worker_failures", "Failed jobs by error code.", ["queue", "code"], registry=REGISTRY
)
QUEUE_WAIT = Histogram(
    "vivify_worker_queue_wait_seconds",
    "Time from submit to a worker starting the job.",
    ["queue"],
    buckets=_TIME_BUCKETS,
    registry=REGISTRY,
)
RUN_TIME = Histogram(
    "vivify_worker_run_seconds",
    "Time from a worker starting the job to its final status.",
    ["queue", "status"],
    buckets=_TIME_BUCKETS,
    registry=REGISTRY,
)
STAGE_TIME = Histogram(
    "vivify_worker_stage_seconds",
    "Seconds per stage of a successful job (animating, decoding, encoding, ...).",
    ["queue", "stage"],
    buckets=_TIME_BUCKETS,
    registry=REGISTRY,
)


CLIP_IDENTITY = Histogram(
    "vivify_worker_clip_identity_distance",
    "The clip check's largest face-descriptor distance to the photo (under 0.6: the same person), by the "
    "animator that made the clip.",
    ["animator"],
    buckets=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0),
    registry=REGISTRY,
)
CLIP_JITTER = Histogram(
    "vivify_worker_clip_jitter",
    "The clip check's landmark jitter (mean acceleration per frame², share of face height), by animator.",
    ["animator"],
    buckets=(0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1),
    registry=REGISTRY,
)


def _gpu_max_memory() -> float:
    """Peak CUDA memory this process allocated, or 0; never imports torch itself (CPU workers)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return float(torch.cuda.max_memory_allocated())
    except Exception:  # a broken driver must not break a scrape
        return 0.0
    return 0.0


GPU_MEMORY = Gauge(
    "vivify_worker_gpu_max_memory_allocated_bytes",
    "torch.cuda.max_memory_allocated() of this process (0 without CUDA).",
    registry=REGISTRY,
)
GPU_MEMORY.set_function(_gpu_max_memory)

_server_port: int | None = None


def serve(port: int, addr: str = "0.0.0.0") -> int | None:
    """Start the metrics HTTP server once per process; 0 = off. Returns the port it serves on."""
    global _server_port
    if not port or _server_port is not None:
        return _server_port
    start_http_server(port, addr=addr, registry=REGISTRY)
    _server_port = port
    log.info("worker metrics on :%d/metrics", port)
    return port


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max(0.0, (as_utc(later) - as_utc(earlier)).total_seconds())  # SQLite returns naive UTC


def record_job(session: Session, job_id: str) -> None:
    """Count a job that this worker brought to a final status (call once, after the task ended)."""
    job = session.get(Job, job_id)
    if job is None or job.status not in FINAL_STATUSES:
        return
    queue = job.queue
    JOBS.labels(queue, job.status).inc()
    if job.status == JobStatus.FAILED:
        FAILURES.labels(queue, job.error_code or "failed").inc()
    wait = _seconds(job.started_at, job.created_at)
    if wait is not None:
        QUEUE_WAIT.labels(queue).observe(wait)
    run = _seconds(job.finished_at, job.started_at)
    if run is not None:
        RUN_TIME.labels(queue, job.status).observe(run)
    check = job.clip_check or {}
    animator = str(check.get("rendered_by") or job.animator)
    if isinstance(check.get("identity_distance"), (int, float)):
        CLIP_IDENTITY.labels(animator).observe(float(check["identity_distance"]))
    if isinstance(check.get("jitter"), (int, float)):
        CLIP_JITTER.labels(animator).observe(float(check["jitter"]))
    for stage, seconds in (job.stage_seconds or {}).items():
        if isinstance(seconds, (int, float)):
            STAGE_TIME.labels(queue, stage).observe(float(seconds))
