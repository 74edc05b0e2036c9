"""Per-visitor and per-IP request rate limits on state-changing endpoints (Settings.rate_limit).

Counters live in process memory (moving window): with several web processes each enforces its own
share. The daily allowance, which is what protects the GPUs, is counted in the database instead.
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimiter:
    def __init__(self, rate: str) -> None:
        self.rate = parse(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, *keys: str) -> int | None:
        """Count one request for every key; None when allowed, else seconds until it would be."""
        for key in keys:
            if not self.limiter.hit(self.rate, key):
                reset = self.limiter.get_window_stats(self.rate, key).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None
