"""/api/v1/jobs/{id}/events against a real uvicorn server: a stream holds no database connection, open
streams are capped per visitor and per address (429 rate_limited JSON past the cap), a closed or ended
stream frees its slot, and stream requests count against the rate limit."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

import migrations
from app.core.config import Settings
from app.core.visitors import hash_ip
from app.web.main import create_app
from app.web.streams import SlotEventSourceResponse, StreamSlots
from tests.app.api_helpers import finish_job, make_settings, post_job

EVENTS = "/api/v1/jobs/{}/events"


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """`app` on a real uvicorn server in a thread, on a free port; its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _READERS.clear()
        server.should_exit = True
        thread.join(15)


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    s = make_settings(tmp_path, trusted_proxies=["127.0.0.1"], **overrides)
    migrations.upgrade(s.resolved_database_url)
    return s


def visitor(base: str, address: str) -> httpx.AsyncClient:
    """A visitor: its own cookie jar, seen at `address` (through the trusted proxy 127.0.0.1)."""
    return httpx.AsyncClient(
        base_url=base,
        headers={"X-Forwarded-For": address},
        timeout=httpx.Timeout(20),
        limits=httpx.Limits(max_connections=400, max_keepalive_connections=0),
    )


async def submit(client: httpx.AsyncClient, photo: bytes) -> str:
    files = {"photo": ("me.jpg", photo, "image/jpeg")}
    r = await client.post("/api/v1/jobs", data={"consent": "true"}, files=files)
    assert r.status_code == 202, r.text
    return r.json()["id"]


async def open_stream(stack: AsyncExitStack, client: httpx.AsyncClient, job_id: str) -> httpx.Response:
    """A stream opened and left open (closed when `stack` closes); its response, headers read."""
    return await stack.enter_async_context(client.stream("GET", EVENTS.format(job_id)))


_READERS: dict[httpx.Response, AsyncIterator[str]] = {}


async def first_event(response: httpx.Response) -> str:
    """The stream's first event data line. Its line reader is kept (in _READERS): a reader dropped
    half-way is finalised, and that closes the connection, which would end the stream."""
    lines = _READERS.setdefault(response, response.aiter_lines())
    async for line in lines:
        if line.startswith("data: "):
            return line
    raise AssertionError("the stream ended without an event")


async def refused(response: httpx.Response) -> dict[str, Any]:
    """A 429 past the stream cap, in the JSON error shape with Retry-After."""
    body = await response.aread()
    assert response.status_code == 429, (response.status_code, body[:200])
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["retry-after"]) >= 1
    error = httpx.Response(429, content=body).json()["error"]
    assert error["code"] == "rate_limited" and set(error) == {"code", "message"}
    return error


async def until(check: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_streams_are_capped_per_visitor_and_per_address_and_free_their_slots(
    tmp_path: Path, small_portrait_jpeg: bytes
) -> None:
    s = _settings(tmp_path, event_streams_per_visitor=2, event_streams_per_address=3)
    app = create_app(s)
    app.state.events_poll_s = 0.05
    here, there = "198.51.100.7", "203.0.113.9"

    async def scenario(base: str) -> None:
        slots: StreamSlots
        async with visitor(base, here) as a, visitor(base, here) as b, visitor(base, there) as c:
            job_a, job_b, job_c = [await submit(v, small_portrait_jpeg) for v in (a, b, c)]
            async with AsyncExitStack() as streams_a, AsyncExitStack() as more:
                first = await open_stream(streams_a, a, job_a)
                assert first.status_code == 200
                assert first.headers["content-type"].startswith("text/event-stream")
                assert '"status":"queued"' in await first_event(first)
                assert (await open_stream(streams_a, a, job_a)).status_code == 200
                slots = app.state.event_streams
                assert slots.open_streams(ip_hash=hash_ip(s, here)) == 2
                # A's third: over the visitor cap.
                error = await refused(await open_stream(more, a, job_a))
                assert "2 event streams" in error["message"]
                # B, at the same address: one more fits the address cap of 3, then not.
                assert (await open_stream(more, b, job_b)).status_code == 200
                error = await refused(await open_stream(more, b, job_b))
                assert "address" in error["message"]
                # C, elsewhere, is not affected.
                assert (await open_stream(more, c, job_c)).status_code == 200
                assert slots.open_streams() == 4
            # Every client hung up: the server notices and frees every slot.
            await until(lambda: slots.open_streams() == 0)
            assert slots.open_streams(ip_hash=hash_ip(s, here)) == 0

            # A stream that ends by itself (its job is final) frees its slot too.
            async with AsyncExitStack() as streams:
                r1 = await open_stream(streams, a, job_a)
                r2 = await open_stream(streams, a, job_a)
                assert r1.status_code == r2.status_code == 200
                await refused(await open_stream(streams, a, job_a))
                await asyncio.to_thread(finish_job, app, job_a)
                texts = [(await r.aread()).decode() for r in (r1, r2)]  # both end once it succeeded
                assert all('"status":"succeeded"' in t for t in texts)
                await until(lambda: slots.open_streams() == 0)
                assert (await a.get(EVENTS.format(job_a))).status_code == 200

    with serve(app) as base:
        asyncio.run(scenario(base))


def test_an_open_stream_holds_no_database_connection(tmp_path: Path, small_portrait_jpeg: bytes) -> None:
    """A pool of 2 connections and 12 open streams: every stream keeps getting its events and every other
    request is answered. (When a stream kept its request's session, the third stream already waited
    10 s for a connection, then answered 503, and so did everything else.)"""
    s = _settings(tmp_path).model_copy(update={"database_pool_size": 2, "database_max_overflow": 0})
    app = create_app(s)
    pool = app.state.engine.pool
    assert pool.size() == 2  # the settings reach the web app's engine
    addresses = [f"198.51.100.{i}" for i in range(1, 4)]

    async def scenario(base: str) -> None:
        clients = [visitor(base, address) for address in addresses]
        async with AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client)
            jobs = [await submit(client, small_portrait_jpeg) for client in clients]
            opened = [
                open_stream(stack, client, job)
                for client, job in zip(clients, jobs, strict=True)
                for _ in range(4)  # the per-visitor default
            ]
            streams = await asyncio.wait_for(asyncio.gather(*opened), 15)
            assert [r.status_code for r in streams] == [200] * 12
            firsts = await asyncio.wait_for(asyncio.gather(*(first_event(r) for r in streams)), 15)
            assert all('"status":"queued"' in line for line in firsts)
            # Between polls no connection is checked out: sample it for a second.
            samples = []
            for _ in range(50):
                samples.append(pool.checkedout())
                await asyncio.sleep(0.02)
            assert min(samples) == 0 and max(samples) <= 2, samples
            # Everything else still gets a connection, at once.
            other = clients[0]
            for path in ("/api/v1/jobs", f"/api/v1/jobs/{jobs[0]}", "/api/v1/quota", "/", f"/jobs/{jobs[0]}"):
                started = time.monotonic()
                r = await other.get(path)
                assert r.status_code == 200, (path, r.status_code, r.text[:200])
                assert time.monotonic() - started < 2, path
            assert (await submit(clients[1], small_portrait_jpeg)) is not None
        await until(lambda: app.state.event_streams.open_streams() == 0)

    with serve(app) as base:
        asyncio.run(scenario(base))


def test_stream_requests_count_against_the_rate_limit(tmp_path: Path, small_portrait_jpeg: bytes) -> None:
    s = _settings(tmp_path, rate_limit="3/minute")
    app = create_app(s)
    app.state.events_poll_s = 0.05
    with TestClient(app) as c:
        job_id = post_job(c, small_portrait_jpeg).json()["id"]  # 1 of 3
        finish_job(app, job_id)
        assert c.get(EVENTS.format(job_id)).status_code == 200  # final: one event, then the end
        seen = c.get(EVENTS.format(job_id), headers={"Last-Event-ID": "succeeded"})
        assert seen.status_code == 204
        r = c.get(EVENTS.format(job_id))
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert r.headers["content-type"] == "application/json" and int(r.headers["retry-after"]) >= 1
        assert c.get(f"/api/v1/jobs/{job_id}").status_code == 200  # reading a job is not limited


def test_a_slot_is_given_back_once_however_the_response_ends() -> None:
    slots = StreamSlots(per_visitor=1, per_address=1)
    slot = slots.acquire("v1", "ip1")
    with pytest.raises(Exception) as over:
        slots.acquire("v1", "ip2")
    assert getattr(over.value, "code", None) == "rate_limited"
    slot.release()
    slot.release()  # twice changes nothing: counts never go below what is open
    assert slots.open_streams() == 0 and slots.open_streams(ip_hash="ip1") == 0

    async def never() -> AsyncIterator[str]:
        yield "x"

    # A response that is never sent (the request failed after the endpoint) gives its slot back when
    # it is collected.
    response = SlotEventSourceResponse(never(), slot=slots.acquire("v1", "ip1"))
    assert slots.open_streams() == 1
    del response
    gc.collect()
    assert slots.open_streams() == 0
    assert slots.acquire("v1", "ip1") is not None
