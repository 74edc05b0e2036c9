"""Open event streams (/api/v1/jobs/{id}/events), counted per visitor and per client address.

A stream is a socket and a task for up to half an hour; without a cap one client could open thousands.
Counters live in process memory (as the rate limits do): with several web processes each caps its own
share. A slot is taken before the stream is answered and given back when the response ends, however
it ends (the job is final, the client went away, the server shuts down, an error).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
from anyio import to_thread
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from app.core.config import Settings
from app.core.errors import ErrorCode, Throttled

# A stream usually ends when its job does (a minute or so): try again about then.
RETRY_AFTER_S = 30
# Worker threads the streams' polls may use at once (of anyio's 40): however many jobs are followed,
# uploads and pages always find threads free; the streams' updates come later instead.
POLL_THREADS = 4

T = TypeVar("T")


class StreamSlot:
    """One open stream's place in the counters; `release` gives it back (once, however often called)."""

    def __init__(self, slots: StreamSlots, keys: tuple[str, ...]) -> None:
        self._slots = slots
        self._keys = keys
        self._released = False

    def release(self) -> None:
        self._slots._release(self)

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


def _too_many(what: str) -> Throttled:
    return Throttled(
        ErrorCode.RATE_LIMITED,
        f"{what}; close one (or let it finish), then try again.",
        retry_after_s=RETRY_AFTER_S,
    )


def stream_slots(state: Any, settings: Settings) -> StreamSlots:
    """The app's counters (on app.state), made with the app's settings on first use."""
    slots: StreamSlots | None = getattr(state, "event_streams", None)
    if slots is None:
        # Created from async code on the event loop with no await in between: no two can race.
        slots = StreamSlots(settings.event_streams_per_visitor, settings.event_streams_per_address)
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
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


class SharedSnapshots(Generic[T]):
    """Every stream following one job shares its polls: a snapshot younger than `max_age_s` is handed
    out again, and a poll already under way is awaited rather than repeated. 300 streams on one job
    cost one database read per `max_age_s`, not 300 (each read is several queries: job_out).

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
