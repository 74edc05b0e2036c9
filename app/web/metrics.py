"""Prometheus metrics of the web tier. One registry per app, so tests and reloads never collide.

Requests are labelled by route template (`/api/v1/jobs/{job_id}`), never by raw path, so ids never
become label values. Jobs by status are counted from the database when Prometheus scrapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.tables import Job, JobStatus

log = logging.getLogger("vivify.metrics")

CLIENT_CLOSED = 499  # a client that went away mid-request: neither our error (500) nor answered


class JobsByStatus(Collector):
    """Jobs by status, and queued jobs per queue (one queue per animator/model), read at scrape time.

    Queue length comes from the job rows, not the broker: it is the same on every transport and counts
    a job the broker lost until the reconciler sends it again.
    """

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("vivify_jobs", "Jobs in the database by status.", labels=["status"])
        queued = GaugeMetricFamily(
            "vivify_queue_length", "Queued jobs per queue (from the database).", labels=["queue"]
        )
        counts = dict.fromkeys(JobStatus, 0)
        try:
            with self.sessions() as session:
                for status, n in session.execute(select(Job.status, func.count()).group_by(Job.status)):
                    counts[status] = int(n)
                per_queue = session.execute(
                    select(Job.queue, func.count()).where(Job.status == JobStatus.QUEUED).group_by(Job.queue)
                ).all()
        except Exception as exc:  # a scrape must not fail because the database is down
            log.warning("jobs gauge: database unavailable (%s)", type(exc).__name__)
            return
        for status, n in counts.items():
            family.add_metric([status.value], n)
        yield family
        for queue, n in sorted(per_queue):
            queued.add_metric([queue], int(n))
        yield queued


class Metrics:
    def __init__(self, sessions: Callable[[], Session]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "vivify_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vivify_http_request_duration_seconds",
            "Time to the response's first byte, by route.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.uploads_rejected = Counter(
            "vivify_uploads_rejected", "Uploads refused, by error code.", ["code"], registry=self.registry
        )
        self.jobs_submitted = Counter("vivify_jobs_submitted", "Jobs accepted.", registry=self.registry)
        self.enqueue_failures = Counter(
            "vivify_enqueue_failures", "Jobs committed but not sent to the broker.", registry=self.registry
        )
        self.registry.register(JobsByStatus(sessions))


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_time(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.metrics.latency.labels(scope["method"], _route(scope)).observe(
                    time.perf_counter() - start
                )
            await send(message)

        try:
            await self.app(scope, receive, send_and_time)
        except ClientDisconnect:  # not answered by a handler: the client is gone, nothing failed here
            status = CLIENT_CLOSED
            log.info("client went away during %s %s", scope["method"], scope.get("path", ""))
        finally:
            self.metrics.requests.labels(scope["method"], _route(scope), str(status)).inc()


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return path
    return "/static" if scope.get("path", "").startswith("/static/") else "unmatched"
