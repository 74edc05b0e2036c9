"""Limits hold across web processes: two real `vivify web` processes behind one address (as behind a load
balancer) share one Redis, and a client gets each rate limit and stream cap once, not once per process.
Stream slots are leases: a process killed with a stream open does not leak its slot for longer than the
lease. And the pieces on their own: two limiters on one Redis share their counts, a Redis that is gone
leaves each process counting alone (no 500, no free pass).

Both clients come from 127.0.0.1, a trusted proxy here: X-Forwarded-For gives each its own address."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import pytest
from e2e_stack import RedisServer, Service, Stack, free_port, wait_for

from app.core.errors import Throttled
from app.web.ratelimit import RateLimiter
from app.web.streams import SharedStreamSlots

pytestmark = pytest.mark.e2e

RATE = 40  # per minute, per visitor and per address
LEASE_S = 3.0


def _client(base: str, address: str, cookies: httpx.Cookies | None = None) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"X-Forwarded-For": address}, cookies=cookies, timeout=30)


def _second_web(stack: Stack) -> tuple[Service, str]:
    port = free_port()
    svc = stack.start_service("web-b", ["web", "--port", str(port)], "web")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, 60, "second web", 0.2)
    return svc, base


def test_two_web_processes_share_the_rate_limit_and_the_stream_cap(
    stack_factory: Callable[..., Stack], small_portrait_jpeg: bytes
) -> None:
    stack = stack_factory(
        rate_limit=f"{RATE}/minute",
        event_streams_per_visitor="2",
        event_streams_per_address="2",
        event_stream_lease_s=str(LEASE_S),
        trusted_proxies="127.0.0.1",
    )
    web_a = stack.web()
    _, base_b = _second_web(stack)
    base_a = stack.base_url

    # The rate limit: RATE requests spread over both processes, then 429 from either of them.
    with _client(base_a, "198.51.100.1") as a:
        a.get("/")  # the visitor's cookie
        with _client(base_b, "198.51.100.1", a.cookies) as b:
            codes = [(a if i % 2 else b).post("/api/v1/photo-check").status_code for i in range(RATE)]
            assert 429 not in codes, codes  # each one counted (a 4xx for the missing photo)
            for side in (a, b):
                r = side.post("/api/v1/photo-check")
                assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited", r.text
                assert int(r.headers["retry-after"]) >= 1

    # The stream cap: one stream on each process fills the visitor's two; a third is refused on both.
    with _client(base_a, "203.0.113.5") as a:
        r = a.post(
            "/api/v1/jobs",
            data={"consent": "true"},
            files={"photo": ("me.jpg", small_portrait_jpeg, "image/jpeg")},
        )
        assert r.status_code == 202, r.text
        events = f"/api/v1/jobs/{r.json()['id']}/events"  # stays queued: no worker runs
        with (
            _client(base_b, "203.0.113.5", a.cookies) as b,
            a.stream("GET", events) as on_a,
            b.stream("GET", events) as on_b,
        ):
            assert (on_a.status_code, on_b.status_code) == (200, 200)
            time.sleep(LEASE_S * 1.5)  # past one lease term: the open streams renew theirs
            for side in (a, b):
                assert _status(side, events) == 429
            # A process killed with its stream open cannot give the slot back: the lease lapses.
            web_a.stop(signal.SIGKILL)
            killed = time.monotonic()
            assert _status(b, events) == 429  # still held, for at most LEASE_S
            lapsed = "the killed process's lease to lapse"
            wait_for(lambda: _status(b, events) == 200, LEASE_S + 5, lapsed, 0.5)
            assert time.monotonic() - killed < LEASE_S + 5


def _status(client: httpx.Client, path: str) -> int:
    """The status of a stream's answer, without reading on (a stream that opens would not end)."""
    with client.stream("GET", path) as r:
        return r.status_code


def test_limiters_on_one_redis_share_their_counts_and_count_alone_without_it(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/15"
    one, two = RateLimiter("3/minute", url, "t1"), RateLimiter("3/minute", url, "t1")
    assert one.shared and two.shared
    assert [one.hit("k"), two.hit("k"), one.hit("k")] == [None, None, None]
    assert two.hit("k") is not None and one.hit("k") is not None  # the fourth, from either
    assert RateLimiter("3/minute", url, "t2").hit("k") is None  # another name counts apart

    gone = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    alone = RateLimiter("2/minute", gone, "t3")
    started = time.monotonic()
    assert [alone.hit("k"), alone.hit("k")] == [None, None]
    assert alone.hit("k") is not None  # counted in the process: still limited
    assert not alone.shared and time.monotonic() - started < 3  # one short wait, not one per request


def test_stream_leases_lapse_and_are_renewed(redis_server: RedisServer) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/14"
    first, second = (SharedStreamSlots(url, 1, 5, lease_s=1.0) for _ in range(2))
    held = first.acquire("visitor", "address")
    with pytest.raises(Throttled):
        second.acquire("visitor", "address")  # the other process sees the slot
    assert second.open_streams(visitor_id="visitor") == 1
    for _ in range(4):  # renewed: still held after twice the lease
        time.sleep(0.4)
        held.renew()
    with pytest.raises(Throttled):
        second.acquire("visitor", "address")
    time.sleep(1.3)  # no renewal: it lapses
    again = second.acquire("visitor", "address")
    again.release()
    assert second.open_streams() == 0 and first.open_streams(ip_hash="address") == 0

    gone = SharedStreamSlots(f"redis://127.0.0.1:{free_port()}/0", 1, 5, lease_s=1.0)
    alone = gone.acquire("visitor", "address")  # counted in this process while Redis is away
    with pytest.raises(Throttled):
        gone.acquire("visitor", "address")
    alone.release()
    gone.acquire("visitor", "address").release()
