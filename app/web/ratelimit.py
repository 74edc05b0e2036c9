"""Per-visitor and per-IP request rate limits on state-changing endpoints (Settings.rate_limit, and the
live view's rig_rate_limit on top).

Counted where Settings.resolved_limits_url says: in Redis, shared by every web process behind the load
balancer (a client gets each limit once, not once per process), or in process memory (memory://, the
embedded default). When Redis cannot be reached the process counts alone for a while rather than refuse
or wave through everyone. The daily allowance, which is what protects the GPUs, is counted in the
database instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from anyio import to_thread
from limits import parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)

# A Redis that does not answer costs a request at most this long; then the process counts alone this
# long before it tries Redis again.
REDIS_TIMEOUT_S = 0.5
LOCAL_AFTER_FAILURE_S = 10.0


def is_shared(storage_url: str) -> bool:
    return not storage_url.startswith("memory://")


class RateLimiter:
    """A moving-window limit of `rate` per key; `name` keeps two limiters' counts apart in one Redis."""

    def __init__(self, rate: str, storage_url: str = "memory://", name: str = "requests") -> None:
        self.rate = parse(rate)
        self.name = name
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        if is_shared(storage_url):
            storage = storage_from_string(
                storage_url,
                key_prefix=f"vivify:limits:{name}",
                wrap_exceptions=True,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            self._shared = MovingWindowRateLimiter(storage)
        self._local_until = 0.0
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """True when the counts are shared through Redis (and Redis answered lately)."""
        return self._shared is not None and time.monotonic() >= self._local_until

    def hit(self, *keys: str) -> int | None:
        """Count one request for every key; None when allowed, else seconds until it would be."""
        if self._shared is not None and self.shared:
            try:
                return self._hit(self._shared, keys)
            except StorageError as exc:
                with self._lock:
                    self._local_until = time.monotonic() + LOCAL_AFTER_FAILURE_S
                log.warning(
                    "rate limit %s: Redis unavailable (%s); counting in this process for %.0f s",
                    self.name,
                    exc.storage_error.__class__.__name__,
                    LOCAL_AFTER_FAILURE_S,
                )
        return self._hit(self._local, keys)

    async def hit_async(self, *keys: str) -> int | None:
        """`hit` from async code: a Redis round trip runs in a worker thread, off the event loop."""
        if self._shared is None:
            return self.hit(*keys)
        return await to_thread.run_sync(self.hit, *keys)

    def _hit(self, limiter: MovingWindowRateLimiter, keys: tuple[str, ...]) -> int | None:
        for key in keys:
            if not limiter.hit(self.rate, key):
                reset = limiter.get_window_stats(self.rate, key).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None
