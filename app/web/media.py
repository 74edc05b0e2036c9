"""A stored clip or poster served from local storage, with Range requests answered as RFC 9110 says.

Starlette's FileResponse answers an unsatisfiable or reversed range with a text/plain 416 or 400; here
every refusal is the API's JSON error. The policy (RFC 9110 §14.2):

- A Range in another unit than bytes, or one whose syntax is not a byte range set (`bytes=abc`,
  `bytes=1-2-3`, `bytes`), is ignored: 200 with the whole file, as a server that does not do ranges.
- A range set with a reversed range (`bytes=5-1`, invalid per §14.1.1) is refused: 416.
- A range set none of whose ranges is satisfiable (every first byte at or past the end, or the
  suffix `-0`) is refused: 416. Either 416 carries `Content-Range: bytes */<size>`.
- Otherwise the satisfiable ranges are served (206), the others dropped.
- An If-Range that does not match the file's validators means the whole file (200), as Starlette does.

HEAD is answered like GET, without the body.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from app.core.errors import ErrorCode
from app.web.errors import error_response

MAX_RANGES = 100  # more ranges than this in one request: served whole (as Starlette does)
_SPEC = re.compile(r"(\d+)-(\d*)|-(\d+)")


class Unsatisfiable(Exception):
    """A Range that is answered 416."""


def satisfiable_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """The byte ranges (first, last; inclusive) of `header` to serve from `size` bytes, or None to
    ignore the header and serve the whole file. Raises Unsatisfiable for a 416 (module docstring)."""
    unit, eq, spec = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    parts = [part.strip() for part in spec.split(",")]
    parts = [part for part in parts if part]  # empty list elements are allowed (RFC 9110 §5.6.1)
    if not parts or len(parts) > MAX_RANGES:
        return None
    parsed: list[tuple[int | None, int | None]] = []
    for part in parts:
        match = _SPEC.fullmatch(part)
        if match is None:
            return None
        first, last, suffix = match.groups()
        if suffix is not None:
            parsed.append((None, _position(suffix)))
        else:
            parsed.append((_position(first), _position(last) if last else None))
    ranges: list[tuple[int, int]] = []
    reversed_range = False
    for first_pos, value in parsed:
        if first_pos is None:  # a suffix: the last `value` bytes
            if value and size > 0:
                ranges.append((max(0, size - value), size - 1))
            continue
        if value is not None and value < first_pos:
            reversed_range = True
        elif first_pos < size:
            ranges.append((first_pos, size - 1 if value is None else min(value, size - 1)))
    if reversed_range or not ranges:
        raise Unsatisfiable
    return ranges


def _position(digits: str) -> int:
    """A byte position of any length: past 18 digits it is beyond any file, and parsing it as a whole
    would meet Python's 4,300-digit limit on int() (a ValueError, so a 500)."""
    return int(digits) if len(digits) <= 18 else _BEYOND_ANY_FILE


_BEYOND_ANY_FILE = 10**18


class MediaFileResponse(FileResponse):
    """FileResponse with the Range policy above; give it `stat_result` (the size must be known)."""

    def __init__(self, *args: Any, what: str = "file", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.stat_result is not None, "MediaFileResponse needs the file's stat_result"
        self.what = what

    def _if_range_matches(self, value: str) -> bool:
        if value.startswith("W/"):
            return False  # a weak validator never allows a range (RFC 9110 §13.1.5)
        return value in (self.headers.get("last-modified"), self.headers.get("etag"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        http_range = headers.get("range")
        if_range = headers.get("if-range")
        method = scope.get("method", "GET").upper()
        applies = (
            scope["type"] == "http"
            and self.status_code == 200
            and http_range is not None
            and method in ("GET", "HEAD")
            and (if_range is None or self._if_range_matches(if_range))
        )
        if applies and http_range is not None:
            assert self.stat_result is not None
            size = self.stat_result.st_size
            try:
                ranges = satisfiable_ranges(http_range, size)
            except Unsatisfiable:
                refusal = error_response(
                    416,
                    ErrorCode.RANGE_NOT_SATISFIABLE.value,
                    f"The requested range is not within the {size} bytes of the {self.what}.",
                    {"Content-Range": f"bytes */{size}", "Cache-Control": "no-store"},
                )
                await refusal(scope, receive, send)
                return
            # Hand Starlette only a range set it serves as is: ours, with explicit ends (or none).
            normalized = None if ranges is None else "bytes=" + ",".join(f"{a}-{b}" for a, b in ranges)
            scope = _with_range(scope, normalized)
        await super().__call__(scope, receive, send)


def _with_range(scope: Scope, value: str | None) -> Scope:
    """`scope` with its Range header replaced by `value` (or removed when None)."""
    raw = [(name, v) for name, v in scope["headers"] if name.lower() != b"range"]
    if value is not None:
        raw.append((b"range", value.encode("latin-1")))
    return {**scope, "headers": raw}
