"""Open event streams (/api/v1/jobs/{id}/events), counted per visitor and per client address.

A stream is a socket and a task for up to half an hour; without a cap one client could open thousands.
A slot is taken before the stream is answered and given back when the response ends, however it ends
(the job is final, the client went away, the server shuts down, an error).

Where the counts live follows the rate limits (Settings.resolved_limits_url): in process memory
(StreamSlots), or in Redis shared by every web process (SharedStreamSlots). A shared slot is a lease
that the open stream renews; a process killed with streams open cannot leak them, its leases lapse.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
from anyio import to_thread
from redis import Redis
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from app.core.config import Settings
from app.core.errors import ErrorCode, Throttled
from app.web.ratelimit import is_shared

# A stream usually ends when its job does (a minute or so): try again about then.
RETRY_AFTER_S = 30
# Worker threads the streams' polls may use at once (of anyio's 40): however many jobs are followed,
# uploads and pages always find threads free; the streams' updates come later instead.
POLL_THREADS = 4

T = TypeVar("T")
log = logging.getLogger(__name__)


class StreamSlot:
    """One open stream's place in the counters; `release` gives it back (once, however often called).
    A shared slot is a lease: `renew` every `renew_every_s` keeps it (None: it never lapses)."""

    renew_every_s: float | None = None

    def __init__(self, slots: StreamSlots, keys: tuple[str, ...]) -> None:
        self._slots = slots
        self._keys = keys
        self._released = False

    def release(self) -> None:
        self._slots._release(self)

    def renew(self) -> None:
        """Nothing to renew in process memory."""

    @property
    def released(self) -> bool:
        return self._released


class StreamSlots:
    """At most `per_visitor` open streams per visitor id and `per_address` per hashed client address."""

    def __init__(self, per_visitor: int, per_address: int) -> None:
        self.per_visitor = per_visitor
        self.per_address = per_address
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, visitor_id: str, ip_hash: str) -> StreamSlot:
        """A slot for one more stream; Throttled rate_limited (429) when either count is at its cap."""
        visitor_key, address_key = f"v:{visitor_id}", f"ip:{ip_hash}"
        with self._lock:
            if self._open[visitor_key] >= self.per_visitor:
                raise _too_many(f"You have {self.per_visitor} event streams open already")
            if self._open[address_key] >= self.per_address:
                raise _too_many(f"Your address has {self.per_address} event streams open already")
            self._open[visitor_key] += 1
            self._open[address_key] += 1
            return StreamSlot(self, (visitor_key, address_key))

    async def acquire_async(self, visitor_id: str, ip_hash: str) -> StreamSlot:
        """`acquire` from async code: in memory, at once."""
        return self.acquire(visitor_id, ip_hash)

    def _release(self, slot: StreamSlot) -> None:
        with self._lock:
            if slot._released:
                return
            slot._released = True
            for key in slot._keys:
                self._open[key] -= 1
                if self._open[key] <= 0:
                    del self._open[key]  # the counter never grows with visitors gone

    def open_streams(self, visitor_id: str | None = None, ip_hash: str | None = None) -> int:
        """Streams open now: of a visitor, of an address, or in all (neither given)."""
        with self._lock:
            if visitor_id is not None:
                return self._open[f"v:{visitor_id}"]
            if ip_hash is not None:
                return self._open[f"ip:{ip_hash}"]
            return sum(n for key, n in self._open.items() if key.startswith("v:"))


# The Lua scripts below run on Redis' clock (web hosts' clocks may differ), in ms. KEYS: the visitor's,
# the address's and everyone's leases (sorted sets scored by expiry); ARGV[1] the lease id, ARGV[2] its ms.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
_TAKE = """
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 0
"""
# Both caps checked and the lease taken in one step. ARGV[3], ARGV[4]: the per-visitor and per-address
# caps. Answers 0 (taken), 1 or 2 (which cap is full).
_ACQUIRE = (
    _NOW
    + """
for i = 1, 3 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 2 end
"""
    + _TAKE
)
# Renewing a lease that lapsed meanwhile (a Redis outage) takes it again.
_RENEW = _NOW + _TAKE
_COUNT = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')"
_PREFIX = "vivify:streams:"
REDIS_TIMEOUT_S = 0.5


class SharedStreamSlot(StreamSlot):
    """A lease in Redis, renewed by its open stream (SlotEventSourceResponse) every third of its term."""

    def __init__(self, slots: SharedStreamSlots, keys: tuple[str, ...], lease_id: str) -> None:
        super().__init__(slots.local, keys)
        self._shared = slots
        self._lease_id = lease_id
        self.renew_every_s = slots.lease_s / 3

    def renew(self) -> None:
        if self._released:
            return
        try:
            self._shared.script(_RENEW, self._keys, self._lease_id, self._shared.lease_ms)
        except RedisError as exc:  # the lease is taken again at the next renewal that gets through
            log.warning("event stream lease not renewed: %s", exc.__class__.__name__)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        try:
            self._shared.redis.zrem(self._keys[0], self._lease_id)
            self._shared.redis.zrem(self._keys[1], self._lease_id)
            self._shared.redis.zrem(self._keys[2], self._lease_id)
        except RedisError as exc:  # it lapses by itself within lease_s
            log.warning("event stream lease not given back: %s", exc.__class__.__name__)


class SharedStreamSlots:
    """StreamSlots counted in Redis for every web process at once. While Redis does not answer, this
    process counts its own streams (StreamSlots) rather than refuse them all or cap nothing."""

    def __init__(self, redis_url: str, per_visitor: int, per_address: int, lease_s: float) -> None:
        self.per_visitor = per_visitor
        self.per_address = per_address
        self.lease_s = lease_s
        self.lease_ms = max(1, int(lease_s * 1000))
        self.redis = Redis.from_url(
            redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self.local = StreamSlots(per_visitor, per_address)
        self._scripts: dict[str, Any] = {}

    def script(self, source: str, keys: tuple[str, ...], *args: str | int | float) -> Any:
        runner = self._scripts.get(source)
        if runner is None:
            runner = self._scripts[source] = self.redis.register_script(source)
        return runner(keys=list(keys), args=list(args))

    def acquire(self, visitor_id: str, ip_hash: str) -> StreamSlot:
        """A lease for one more stream; Throttled rate_limited (429) when either count is at its cap."""
        keys = (f"{_PREFIX}v:{visitor_id}", f"{_PREFIX}ip:{ip_hash}", f"{_PREFIX}all")
        lease_id = secrets.token_hex(8)
        try:
            answer = self.script(_ACQUIRE, keys, lease_id, self.lease_ms, self.per_visitor, self.per_address)
        except RedisError as exc:
            log.warning("event stream caps: Redis unavailable (%s); counting in this process", exc)
            return self.local.acquire(visitor_id, ip_hash)
        if answer == 1:
            raise _too_many(f"You have {self.per_visitor} event streams open already")
        if answer == 2:
            raise _too_many(f"Your address has {self.per_address} event streams open already")
        return SharedStreamSlot(self, keys, lease_id)

    async def acquire_async(self, visitor_id: str, ip_hash: str) -> StreamSlot:
        """`acquire` from async code: the Redis round trip runs off the event loop (should the caller be
        cancelled meanwhile, the lease lapses by itself)."""
        return await to_thread.run_sync(self.acquire, visitor_id, ip_hash)

    def open_streams(self, visitor_id: str | None = None, ip_hash: str | None = None) -> int:
        """Leases held now, by every process: of a visitor, of an address, or in all (neither given)."""
        key = "all"
        if visitor_id is not None:
            key = f"v:{visitor_id}"
        elif ip_hash is not None:
            key = f"ip:{ip_hash}"
        return int(self.script(_COUNT, (_PREFIX + key,))) + self.local.open_streams(visitor_id, ip_hash)


def _too_many(what: str) -> Throttled:
    return Throttled(
        ErrorCode.RATE_LIMITED,
        f"{what}; close one (or let it finish), then try again.",
        retry_after_s=RETRY_AFTER_S,
    )


def stream_slots(state: Any, settings: Settings) -> StreamSlots | SharedStreamSlots:
    """The app's counters (on app.state), made with the app's settings on first use."""
    slots: StreamSlots | SharedStreamSlots | None = getattr(state, "event_streams", None)
    if slots is None:
        # Created from async code on the event loop with no await in between: no two can race.
        url = settings.resolved_limits_url
        per_visitor, per_address = settings.event_streams_per_visitor, settings.event_streams_per_address
        if is_shared(url):
            slots = SharedStreamSlots(url, per_visitor, per_address, settings.event_stream_lease_s)
        else:
            slots = StreamSlots(per_visitor, per_address)
        state.event_streams = slots
    return slots


class SlotEventSourceResponse(EventSourceResponse):
    """An event stream that gives its slot back when it ends, however it ends. A response that is never
    sent (a failure between the endpoint and the server) gives it back when it is collected."""

    def __init__(self, *args: Any, slot: StreamSlot, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slot = slot
        weakref.finalize(self, slot.release)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:
                if self.slot.renew_every_s is not None:
                    group.start_soon(self._keep_lease, self.slot.renew_every_s)
                await super().__call__(scope, receive, send)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await to_thread.run_sync(self.slot.release)

    async def _keep_lease(self, every_s: float) -> None:
        while True:
            await anyio.sleep(every_s)
            await to_thread.run_sync(self.slot.renew)


class SharedSnapshots(Generic[T]):
    """Every stream following one job shares its polls: a snapshot younger than `max_age_s` is handed
    out again, and a poll already under way is awaited rather than repeated. 300 streams on one job
    cost one database read per `max_age_s`, not 300 (each read is the job and one statement for where
    it stands: schemas.job_view).

    `load(job_id)` is blocking (it takes a short session of its own); it runs in a worker thread, at
    most POLL_THREADS at once. Used from one event loop; a new loop (another TestClient) starts afresh.
    """

    def __init__(self, load: Callable[[str], T]) -> None:
        self._load = load
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._fresh: dict[str, tuple[float, T]] = {}
        self._loading: dict[str, asyncio.Future[T]] = {}

    async def get(self, job_id: str, max_age_s: float) -> T:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._limiter = loop, anyio.CapacityLimiter(POLL_THREADS)
            self._fresh.clear()
            self._loading.clear()
        now = time.monotonic()
        fresh = self._fresh.get(job_id)
        if fresh is not None and now - fresh[0] < max_age_s:
            return fresh[1]
        future = self._loading.get(job_id)
        if future is None:
            future = asyncio.ensure_future(self._read(job_id))
            self._loading[job_id] = future
            future.add_done_callback(lambda done: self._done(job_id, done))
        # Shielded: a stream that goes away (cancelled) does not cancel the read the others await.
        return await asyncio.shield(future)

    async def _read(self, job_id: str) -> T:
        value = await to_thread.run_sync(self._load, job_id, limiter=self._limiter)
        self._fresh[job_id] = (time.monotonic(), value)
        return value

    def _done(self, job_id: str, future: asyncio.Future[T]) -> None:
        if self._loading.get(job_id) is future:
            del self._loading[job_id]
        if not future.cancelled():
            future.exception()  # retrieved: no "never retrieved" warning when every waiter left
        # Forget snapshots nobody asked for lately, so the map stays as small as the jobs followed.
        cutoff = time.monotonic() - 60
        for stale in [key for key, (at, _) in self._fresh.items() if at < cutoff]:
            del self._fresh[stale]


def shared_snapshots(state: Any, load: Callable[[str], T]) -> SharedSnapshots[T]:
    """The app's SharedSnapshots (on app.state), made on first use with `load`."""
    snapshots: SharedSnapshots[T] | None = getattr(state, "event_snapshots", None)
    if snapshots is None:
        snapshots = SharedSnapshots(load)
        state.event_snapshots = snapshots
    return snapshots
