"""Liveness, readiness and metrics for orchestrators and Prometheus."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.core.config import Settings
from app.core.errors import ErrorCode
from app.core.queue import celery_config
from app.core.schemas import HealthOut, ReadyOut
from app.web.deps import MetricsDep, SettingsDep
from app.web.errors import error_response

log = logging.getLogger("vivify.health")
router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 2.0


@router.get("/healthz", response_model=HealthOut, summary="The process is alive")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


def _check_broker(settings: Settings) -> None:
    from kombu import Connection

    conf = celery_config(settings)
    with Connection(
        conf["broker_url"],
        transport_options=conf["broker_transport_options"],
        connect_timeout=BROKER_TIMEOUT_S,
    ) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_S)


def _run_checks(request: Request, settings: Settings) -> dict[str, str]:
    checks: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], object]) -> None:
        try:
            fn()
            checks[name] = "ok"
        except Exception as exc:  # the probe reports what failed, never raises
            log.warning("readiness: %s failed (%s)", name, type(exc).__name__)
            checks[name] = f"unavailable: {type(exc).__name__}"

    def database() -> None:
        with request.app.state.sessions() as session:
            session.execute(text("SELECT 1"))

    attempt("database", database)
    attempt("storage", request.app.state.store.check)
    attempt("broker", lambda: _check_broker(settings))
    return checks


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut}},
    summary="Database, object store and broker reachable",
)
async def readyz(request: Request, settings: SettingsDep) -> JSONResponse:
    checks = await run_in_threadpool(_run_checks, request, settings)
    ok = all(v == "ok" for v in checks.values())
    status = "ok" if ok else "unavailable"
    body = ReadyOut(status=status, checks=checks, clip_guard=settings.clip_guard).model_dump()
    headers = None if ok else {"Retry-After": "5"}
    return JSONResponse(body, status_code=200 if ok else 503, headers=headers)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (with the metrics token)")
def metrics(m: MetricsDep, request: Request, settings: SettingsDep) -> Response:
    """Private: the site's activity (job counts, routes, rejections) is no visitor's business. Without
    VIVIFY_METRICS_TOKEN the endpoint is not served (404, as an unknown path); with it, a scrape sends
    `Authorization: Bearer <token>`, and anything else gets 401."""
    token = settings.metrics_token
    if token is None:
        return error_response(404, ErrorCode.NOT_FOUND.value, "Not Found")
    expected = f"Bearer {token.get_secret_value()}".encode()
    if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
        return error_response(
            401, ErrorCode.UNAUTHORIZED.value, "Send the metrics token.", {"WWW-Authenticate": "Bearer"}
        )
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
