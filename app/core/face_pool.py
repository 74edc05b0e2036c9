"""Where the web tier's face work runs: threads of its own, bounded, never the shared pool pages use.

Every upload's photo check reads the faces (quality, motion plan); the live view's `?rig=true` also
builds a rig, about ten times the work. Run in anyio's shared thread pool (40 threads, also every
synchronous page and dependency), a burst of rig builds left pages waiting for a thread for tens of
seconds. So:
- `analysis` (VIVIFY_FACE_ANALYSIS_CONCURRENCY, 2): the face reading every upload needs.
- `rigs` (VIVIFY_RIG_CONCURRENCY, 1): `?rig=true` checks, all their face work (the reading and plan as
  well as the rig build, on its own mediapipe graphs: app.core.service.rigs), so they never queue an
  upload's analysis behind them. A rig check waits at most VIVIFY_RIG_WAIT_S for its turn, then 503
  `server_busy` with Retry-After; one client address may have at most VIVIFY_RIG_WAITING_PER_ADDRESS
  of them waiting or running (429 past that).
Both are per process: they protect one process's CPU and memory.
"""

from __future__ import annotations

import asyncio
import math
import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import anyio
from anyio import to_thread

from app.core.config import Settings
from app.core.errors import ErrorCode, Throttled, Unavailable

T = TypeVar("T")


class FacePools:
    def __init__(self, analysis: int, rigs: int, rig_wait_s: float, rig_waiting_per_address: int) -> None:
        self.analysis = anyio.CapacityLimiter(analysis)
        self.rigs = anyio.CapacityLimiter(rigs)
        self._rig_threads = anyio.CapacityLimiter(rigs)  # the threads of admitted builds
        self.rig_wait_s = rig_wait_s
        self.rig_waiting_per_address = rig_waiting_per_address
        self._lock = threading.Lock()
        self.rigs_by_address: Counter[str] = Counter()  # waiting or running, per client address

    async def analyse(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in one of the analysis threads (waits for one: an upload's analysis is short)."""
        return await to_thread.run_sync(fn, *args, limiter=self.analysis)

    @asynccontextmanager
    async def rig_lane(self, address: str) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
        """A rig request's turn: all its face work (reading the faces, planning, building the rig) runs
        through the runner this yields, in a rig thread, so a burst of rig requests never queues an
        upload's analysis behind it. Throttled when `address` already has its share waiting or running,
        Unavailable when no turn frees up within rig_wait_s."""
        with self._one_of(address):
            with anyio.move_on_after(self.rig_wait_s) as waiting:
                await self.rigs.acquire()
            if waiting.cancelled_caught:  # no turn within rig_wait_s (acquire holds nothing then)
                raise Unavailable(
                    ErrorCode.SERVER_BUSY,
                    "The server is busy building other live views; try again in a few seconds.",
                    retry_after_s=max(1, math.ceil(self.rig_wait_s)),
                )
            try:
                yield self._in_rig_thread
            finally:
                self.rigs.release()

    async def _in_rig_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await to_thread.run_sync(fn, *args, limiter=self._rig_threads)

    async def build_rig(self, address: str, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` alone in a rig lane (see rig_lane)."""
        async with self.rig_lane(address) as run:
            return await run(fn, *args)

    @contextmanager
    def _one_of(self, address: str) -> Iterator[None]:
        with self._lock:
            if self.rigs_by_address[address] >= self.rig_waiting_per_address:
                raise Throttled(
                    ErrorCode.RATE_LIMITED,
                    "Too many live views asked for at once; wait for them, then try again.",
                    retry_after_s=max(1, math.ceil(self.rig_wait_s)),
                )
            self.rigs_by_address[address] += 1
        try:
            yield
        finally:
            with self._lock:
                self.rigs_by_address[address] -= 1
                if self.rigs_by_address[address] <= 0:
                    del self.rigs_by_address[address]


# Per event loop (anyio's limiters belong to the loop they were first used on: a web process has one, a
# test client each its own) and per distinct setting, so tests stay apart.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], FacePools]] = (
    weakref.WeakKeyDictionary()
)
_pools_lock = threading.Lock()


def face_pools(settings: Settings) -> FacePools:
    """The pools of the running event loop for these settings; call it from async code."""
    key = (
        settings.face_analysis_concurrency,
        settings.rig_concurrency,
        settings.rig_wait_s,
        settings.rig_waiting_per_address,
    )
    loop = asyncio.get_running_loop()
    with _pools_lock:
        pools = _pools.setdefault(loop, {}).get(key)
        if pools is None:
            pools = _pools[loop][key] = FacePools(*key)
        return pools
