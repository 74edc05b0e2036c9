"""A process-wide allowance for decoding uploaded photos: a few at a time, within a memory budget.

A photo's pixels are far larger than its file (a 300 KB PNG can hold 40 MP of 16-bit RGBA), so the web
tier never decodes an upload before it holds a share of this budget: `decode_bytes` of the photo
(estimated from its header, see app.core.uploads.decode_cost) out of `decode_memory_mb`, and for a large
photo one of `decode_concurrency` slots. A small photo needs bytes only, so a normal upload is not
queued behind near-limit ones. A request that cannot get its share within `decode_wait_s` is refused
as Unavailable (503 + Retry-After) instead of queueing without end; a photo that alone needs more than
the whole budget is refused as TooLarge.

Waiting happens either in a worker thread (`hold`, a Condition) or on the event loop (`hold_async`, a
short poll that keeps no thread busy); both share one budget, so every upload path counts.
After each decode the freed memory is handed back to the operating system (glibc's malloc keeps freed
blocks in per-thread arenas otherwise, and the web process would keep its peak for good).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio

from app.core.errors import ErrorCode, TooLarge, Unavailable

# A decode of at most this many bytes needs no slot (a phone photo at 12 MP as RGB is ~48 MB; a 2 MP
# photo ~8 MB): checking a normal photo stays quick while near-limit ones queue for the slots.
SMALL_DECODE_BYTES = 16 * 1024 * 1024
POLL_S = 0.02


class DecodeBudget:
    def __init__(self, slots: int, capacity_bytes: int, wait_s: float) -> None:
        self.slots = slots
        self.capacity = capacity_bytes
        self.wait_s = wait_s
        self._cond = threading.Condition()
        self._free_slots = slots
        self._free_bytes = capacity_bytes
        self.in_use = 0  # decodes holding a share now (for tests and diagnostics)
        self.peak_bytes = 0  # the most bytes held at once since start
        self.peak_slots = 0  # the most large decodes at once since start

    def check_fits(self, nbytes: int) -> None:
        if nbytes > self.capacity:
            mb = math.ceil(nbytes / 2**20)
            raise TooLarge(
                ErrorCode.TOO_MANY_PIXELS,
                f"Reading this photo needs about {mb} MB of memory; this server reads photos of up to "
                f"{self.capacity // 2**20} MB. Upload a smaller copy (fewer pixels, or 8-bit colour).",
            )

    def _try_take(self, nbytes: int) -> bool:
        large = nbytes > SMALL_DECODE_BYTES
        if nbytes > self._free_bytes or (large and self._free_slots <= 0):
            return False
        self._free_bytes -= nbytes
        self._free_slots -= large
        self.in_use += 1
        self.peak_bytes = max(self.peak_bytes, self.capacity - self._free_bytes)
        self.peak_slots = max(self.peak_slots, self.slots - self._free_slots)
        return True

    def _release(self, nbytes: int) -> None:
        with self._cond:
            self._free_bytes += nbytes
            self._free_slots += nbytes > SMALL_DECODE_BYTES
            self.in_use -= 1
            idle = self.in_use == 0
            self._cond.notify_all()
        if idle or nbytes > SMALL_DECODE_BYTES:
            trim_heap()

    def _busy(self) -> Unavailable:
        return Unavailable(
            ErrorCode.SERVER_BUSY,
            "The server is busy reading other photos; try again in a few seconds.",
            retry_after_s=max(1, math.ceil(self.wait_s)),
        )

    @contextlib.contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Hold `nbytes` (and a slot when large) while the block runs; blocks this thread ≤ wait_s."""
        self.check_fits(nbytes)
        with self._cond:
            if not self._cond.wait_for(lambda: self._try_take(nbytes), timeout=self.wait_s):
                raise self._busy()
        try:
            yield
        finally:
            self._release(nbytes)

    @contextlib.asynccontextmanager
    async def hold_async(self, nbytes: int) -> AsyncIterator[None]:
        """`hold` for the event loop: waits ≤ wait_s without keeping a thread busy."""
        self.check_fits(nbytes)
        deadline = time.monotonic() + self.wait_s
        while True:
            with self._cond:
                if self._try_take(nbytes):
                    break
            if time.monotonic() >= deadline:
                raise self._busy()
            await anyio.sleep(POLL_S)
        try:
            yield
        finally:
            self._release(nbytes)


_budgets: dict[tuple[int, int, float], DecodeBudget] = {}
_budgets_lock = threading.Lock()


def decode_budget(slots: int, memory_mb: int, wait_s: float) -> DecodeBudget:
    """The process's budget for these settings (one per distinct setting, so tests stay apart)."""
    key = (slots, memory_mb, wait_s)
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = DecodeBudget(slots, memory_mb * 2**20, wait_s)
        return budget


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to hand back this way
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_trim()


def trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc keeps it in the arena of the thread that freed it)."""
    if _malloc_trim is not None:
        _malloc_trim(0)
