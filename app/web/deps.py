"""Request dependencies: settings, database session, object store, the visitor and their jobs.

Everything comes from `app.state` (set by create_app), never from module globals, so two apps with
different Settings (tests) never share an engine, a store or a broker connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request, Response
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.errors import ErrorCode, Throttled
from app.core.service import JobService
from app.core.storage import ObjectStore
from app.core.tables import Job
from app.core.visitors import (
    COOKIE_NAME,
    Visitor,
    client_ip,
    cookie_kwargs,
    hash_ip,
    new_visitor_id,
    read_visitor_cookie,
    sign_visitor_id,
)
from app.web.metrics import Metrics
from app.web.ratelimit import RateLimiter


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory() as session:
        yield session


def get_store_dep(request: Request) -> ObjectStore:
    return request.app.state.store


def get_producer(request: Request) -> Celery:
    return request.app.state.producer


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ObjectStore, Depends(get_store_dep)]
ProducerDep = Annotated[Celery, Depends(get_producer)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def request_ip(request: Request, settings: Settings) -> str:
    peer = request.client.host if request.client else None
    return client_ip(peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies)


def get_visitor(request: Request, response: Response, settings: SettingsDep) -> Visitor:
    """The visitor named by the signed cookie; a new one (cookie set on this response) otherwise."""
    cached = getattr(request.state, "visitor", None)
    if cached is not None:
        return cached
    ip = request_ip(request, settings)
    visitor_id = read_visitor_cookie(settings, request.cookies.get(COOKIE_NAME))
    is_new = visitor_id is None
    visitor = Visitor(id=visitor_id or new_visitor_id(), ip=ip, ip_hash=hash_ip(settings, ip), is_new=is_new)
    if is_new:
        response.set_cookie(COOKIE_NAME, sign_visitor_id(settings, visitor.id), **cookie_kwargs(settings))
    request.state.visitor = visitor
    return visitor


VisitorDep = Annotated[Visitor, Depends(get_visitor)]


def _keys(visitor: Visitor) -> tuple[str, str]:
    return f"v:{visitor.id}", f"ip:{visitor.ip_hash}"


def _throttled(wait: int | None, what: str) -> None:
    if wait is not None:
        message = f"Too many {what}; try again in {wait} s."
        raise Throttled(ErrorCode.RATE_LIMITED, message, retry_after_s=wait)


def rate_limited(request: Request, visitor: VisitorDep) -> None:
    """Per-visitor and per-IP limit (Settings.rate_limit) for state-changing requests."""
    limiter: RateLimiter = request.app.state.rate_limiter
    _throttled(limiter.hit(*_keys(visitor)), "requests")


async def throttle(limiter: RateLimiter, visitor: Visitor, what: str = "requests") -> None:
    """`limiter`'s limit for `visitor` from async code (a Redis round trip runs off the event loop);
    Throttled rate_limited (429) past it."""
    _throttled(await limiter.hit_async(*_keys(visitor)), what)


RateLimited = Depends(rate_limited)


def get_service(
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    producer: ProducerDep,
    metrics: MetricsDep,
    visitor: VisitorDep,
) -> JobService:
    return JobService(session, settings, store, producer, metrics, visitor)


ServiceDep = Annotated[JobService, Depends(get_service)]


def owned_job(job_id: str, service: ServiceDep) -> Job:
    """The visitor's job; NotFound (404) for unknown ids and other visitors' jobs alike."""
    return service.owned(job_id)


OwnedJobDep = Annotated[Job, Depends(owned_job)]


def owned_job_released(
    job_id: str,
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    producer: ProducerDep,
    metrics: MetricsDep,
    visitor: VisitorDep,
) -> Job:
    """The visitor's job (NotFound as owned_job), read with a session of its own that is closed before
    this returns: its connection is back in the pool before the response starts. For responses that
    last (an event stream may run for half an hour), which must not hold a pooled connection meanwhile.

    Checkout and return happen in one worker-thread call: a request never holds a connection while it
    waits for a thread (with many such requests at once, that wait could outlast the pool)."""
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory() as session:
        # Loaded attributes stay readable once the session is closed (close() expires nothing).
        return JobService(session, settings, store, producer, metrics, visitor).owned(job_id)


OwnedJobReleasedDep = Annotated[Job, Depends(owned_job_released)]
