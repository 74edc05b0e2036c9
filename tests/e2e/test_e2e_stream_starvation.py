"""One visitor's event streams cannot starve everyone else: the real `vivify web` (embedded defaults:
SQLite, whose pool holds 40 + 10 connections) with 300 streams open from one visitor still answers
another visitor's upload, job status and pages within a second; past the cap the streaming visitor gets
429 rate_limited (JSON, Retry-After); streams that close free their slots.

Before the fix each stream kept its request's pooled database connection for its whole life: at about
50 open streams every other request waited 10 s for a connection and answered 503.

Both visitors come from 127.0.0.1, a trusted proxy here: X-Forwarded-For gives them their own address,
so the per-address rate limit and stream cap do not mix them."""

from __future__ import annotations

import asyncio
import secrets
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_stack import Service, base_env, free_port, wait_for

pytestmark = pytest.mark.e2e

STREAMS = 300
ANSWER_WITHIN_S = 1.0
ROUNDS = 5  # each of the other visitor's requests, this many times while the streams are open
STREAMER, OTHER = "198.51.100.7", "203.0.113.9"


def _client(base: str, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base,
        headers={"X-Forwarded-For": address},
        timeout=httpx.Timeout(30),
        limits=httpx.Limits(max_connections=STREAMS + 50, max_keepalive_connections=20),
    )


async def _submit(client: httpx.AsyncClient, photo: bytes) -> httpx.Response:
    files = {"photo": ("me.jpg", photo, "image/jpeg")}
    return await client.post("/api/v1/jobs", data={"consent": "true"}, files=files)


async def _open(stack: AsyncExitStack, client: httpx.AsyncClient, job_id: str) -> httpx.Response:
    return await stack.enter_async_context(client.stream("GET", f"/api/v1/jobs/{job_id}/events"))


async def _is_429(response: httpx.Response) -> None:
    body = await response.aread()
    assert response.status_code == 429, (response.status_code, body[:300])
    assert (
        response.headers["content-type"] == "application/json" and int(response.headers["retry-after"]) >= 1
    )
    assert httpx.Response(429, content=body).json()["error"]["code"] == "rate_limited"


async def _timed(call: Any) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = await call
    return time.perf_counter() - started, response


async def _scenario(base: str, photo: bytes) -> dict[str, float]:
    latencies: dict[str, list[float]] = {"upload": [], "status": [], "page": [], "job page": []}
    async with _client(base, STREAMER) as streamer, _client(base, OTHER) as other:
        r = await _submit(streamer, photo)
        assert r.status_code == 202, r.text
        job = r.json()["id"]  # stays queued: no worker runs, so every stream stays open
        assert (await _submit(other, photo)).status_code == 202  # the other visitor's cookie
        async with AsyncExitStack() as streams:
            started = time.perf_counter()
            opened = await asyncio.gather(*(_open(streams, streamer, job) for _ in range(STREAMS)))
            open_s = time.perf_counter() - started
            assert [o.status_code for o in opened] == [200] * STREAMS
            await asyncio.sleep(2)  # let every stream settle into polling
            # Past the cap: 429 for the streaming visitor, and nothing else is slowed down.
            await _is_429(await _open(streams, streamer, job))
            for _ in range(ROUNDS):
                elapsed, r = await _timed(_submit(other, photo))
                assert r.status_code == 202, r.text
                latencies["upload"].append(elapsed)
                mine = r.json()["id"]
                for name, path in (
                    ("status", f"/api/v1/jobs/{mine}"),
                    ("page", "/"),
                    ("job page", f"/jobs/{mine}"),
                ):
                    elapsed, r = await _timed(other.get(path))
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])
                    latencies[name].append(elapsed)
            # Every stream is still alive and was answered (its first event is there to read).
            alive = sum(1 for o in opened if not o.is_closed)
            assert alive == STREAMS
            print(f"\n{STREAMS} streams opened in {open_s:.2f} s; latencies (ms) while open:")
            for name, values in latencies.items():
                print(f"  {name}: " + " ".join(f"{1000 * v:.0f}" for v in values))
        # All closed by the client: the slots come back, and a full set can be opened again.
        async with AsyncExitStack() as again:
            deadline = time.monotonic() + 20
            while True:
                probe = await _open(again, streamer, job)
                if probe.status_code == 200:
                    break
                await probe.aread()
                assert time.monotonic() < deadline, "closed streams did not free their slots"
                await asyncio.sleep(0.2)
            started = time.perf_counter()
            reopened = await asyncio.gather(*(_open(again, streamer, job) for _ in range(STREAMS - 1)))
            print(f"{STREAMS - 1} more reopened in {time.perf_counter() - started:.2f} s")
            assert [o.status_code for o in reopened] == [200] * (STREAMS - 1)
            await _is_429(await _open(again, streamer, job))
    return {name: max(values) for name, values in latencies.items()}


def test_300_open_streams_do_not_starve_other_visitors(tmp_path: Path, small_portrait_jpeg: bytes) -> None:
    port = free_port()
    env = base_env(
        data_dir=str(tmp_path / "var"),
        secret_key=secrets.token_urlsafe(32),
        trusted_proxies="127.0.0.1",
        event_streams_per_visitor=str(STREAMS),
        event_streams_per_address=str(STREAMS),
        rate_limit="100000/minute",
        free_animations_per_day="100",
        log_level="WARNING",
    )
    web = Service("web", ["web", "--migrate", "--port", str(port)], env, tmp_path).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, 60, "vivify web", 0.2)
        worst = asyncio.run(asyncio.wait_for(_scenario(base, small_portrait_jpeg), 240))
        assert all(s < ANSWER_WITHIN_S for s in worst.values()), worst
        assert web.alive()
        assert " 503 " not in web.log() and "database unavailable" not in web.log()
    finally:
        web.stop()
