"""Webhooks for integrators, in the manner of Replicate and the Standard Webhooks spec.

One call of deliver() is one attempt; retries belong to the delivery task (worker/webhooks.py),
which re-queues the event through Celery with backoff instead of sleeping in the worker.

Each delivery carries `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256
of "id.timestamp.body">`. Deliveries go to public addresses only unless a setting allows private ones,
since a webhook URL is otherwise a way to make our servers call into our own network (SSRF).

An attempt resolves the host name once, checks every address, and connects to the checked address
itself (Host header and TLS SNI/certificate checks still use the name), so DNS cannot answer "public"
to the check and "private" to the connection (rebinding). It reads at most MAX_RESPONSE_BYTES of the
answer and has one wall-clock deadline, so a receiver can neither bloat nor stall the worker.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import contextvars
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import socket
import ssl
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.core.addresses import IPAddress, embedded_ipv4

EVENTS = ("start", "progress", "completed")
MAX_URL_CHARS = 2000
MAX_RESPONSE_BYTES = 64 * 1024  # we only need the status; the rest of an answer is never read

# A DNS label (RFC 1123, plus "_" which some real hosts use); 63 characters at most.
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


class WebhookRefused(ValueError):
    """The URL may not receive webhooks. The message never repeats the URL (it may hold a secret)."""


class DeadlineExceeded(httpx.TimeoutException):
    """The attempt ran past its whole-attempt deadline; a transport error, hence retryable."""


class AttemptFailed(Exception):
    """What the delivery task hands Celery's retry: a description with no URL in it (Celery logs it)."""


# While an attempt runs: what httpx's own "HTTP Request: POST <url>" INFO line may show of its URL.
_shown_url: contextvars.ContextVar[str | None] = contextvars.ContextVar("webhook_shown_url", default=None)


class _RedactHttpxUrl(logging.Filter):
    """httpx logs each request's full URL (credentials, path and query); for a webhook delivery, show
    scheme://host[:port] instead. Other httpx clients in the process are left alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        shown = _shown_url.get()
        if shown is not None and isinstance(record.args, tuple):
            record.args = tuple(shown if isinstance(arg, httpx.URL) else arg for arg in record.args)
        return True


logging.getLogger("httpx").addFilter(_RedactHttpxUrl())


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# host, port -> its addresses. Module-level so tests can stand in for DNS (e.g. a rebinding one).
resolve: Callable[[str, int], list[str]] = _system_resolve


def parse_events(text: str | None) -> list[str]:
    """ "start,completed" → ["start", "completed"]; empty → every event except progress (noisy)."""
    if not text:
        return ["start", "completed"]
    events = [e.strip() for e in text.split(",") if e.strip()]
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise ValueError(f"unknown webhook events {unknown}; expected some of {', '.join(EVENTS)}")
    return list(dict.fromkeys(events))


def redact_url(url: str) -> str:
    """scheme://host[:port] of a URL, for logs: no credentials, path or query (they may be tokens).
    Never raises."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        text = f"{parts.scheme}://{host}{port}"
    except ValueError:
        return "<malformed url>"
    # A control character in what we print would let the URL forge log lines.
    return text if text.isprintable() else "<malformed url>"


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    host: str  # ASCII (IDNA) name or IP literal, lower case, no brackets
    port: int
    netloc: str  # the Host header: host[:port], brackets for IPv6, no credentials
    literal: IPAddress | None  # the host when it is an IP address


def _parse(url: str) -> _Target:
    """The URL, checked for shape only (no DNS). Raises WebhookRefused and nothing else."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookRefused("webhook URL is too long")
    # urlsplit silently drops tabs and newlines and httpx refuses them at send time: refuse any
    # whitespace or control/format character up front, so what is stored is what gets delivered.
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in url):
        raise WebhookRefused("webhook URL contains whitespace or control characters")
    try:
        parsed = httpx.URL(url)
        raw_host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError):  # UnicodeError is a ValueError
        raise WebhookRefused("webhook URL is malformed") from None
    if parsed.scheme not in ("http", "https") or not raw_host:
        raise WebhookRefused("webhook must be an absolute http(s) URL")
    port = parsed.port if parsed.port is not None else (443 if parsed.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise WebhookRefused("webhook URL has an invalid port")
    host = raw_host.lower()
    literal: IPAddress | None = None
    if "%" in host:  # a scoped IPv6 address (or a percent-encoded name): never a public receiver
        raise WebhookRefused("webhook URL has an invalid host")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        name = host[:-1] if host.endswith(".") else host
        if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
            raise WebhookRefused("webhook URL has an invalid host name") from None
    return _Target(parsed, host, port, parsed.netloc.decode("ascii"), literal)


# IPv6 is allow-listed: global unicast (2000::/3) only, less the special-purpose blocks inside it that
# Python's is_global may not know (3fff::/20, documentation since 2024) or that wrap IPv4 (judged by
# that IPv4 before this). A deny-list cannot do it: Python 3.11 calls the deprecated site-local
# fec0::/10 global, and it is in no special-purpose registry.
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_SPECIAL_IN_GLOBAL_UNICAST = tuple(
    ipaddress.IPv6Network(n) for n in ("2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20")
)


def is_public(addr: IPAddress) -> bool:
    """May a webhook be sent there? An address wrapping IPv4 is judged by the IPv4 it wraps."""
    if getattr(addr, "scope_id", None):
        return False
    inner = embedded_ipv4(addr)
    if inner is not None:
        addr = inner
    if isinstance(addr, ipaddress.IPv6Address) and (
        addr not in _GLOBAL_UNICAST or any(addr in net for net in _SPECIAL_IN_GLOBAL_UNICAST)
    ):
        return False
    return addr.is_global and not (
        addr.is_multicast
        or addr.is_private
        or addr.is_reserved
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_unspecified
    )


def _checked(target: _Target, addresses: list[str], allow_private: bool) -> list[IPAddress]:
    """The addresses, every one of them allowed; else WebhookRefused."""
    checked: list[IPAddress] = []
    for text in addresses:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise WebhookRefused(f"webhook host {target.host!r} resolves to an invalid address") from None
        if not allow_private and not is_public(addr):
            raise WebhookRefused("webhooks to private, loopback or link-local addresses are not allowed")
        checked.append(addr)
    if not checked:
        raise WebhookRefused(f"webhook host {target.host!r} does not resolve")
    return checked


def check_url(url: str, *, allow_private: bool = False) -> str:
    """Refuse malformed and non-HTTP(S) URLs and hosts that resolve to private, loopback or link-local
    addresses. Raises WebhookRefused only. Resolves the name (blocking) unless allow_private."""
    target = _parse(url)
    if target.literal is not None:
        _checked(target, [str(target.literal)], allow_private)
    elif not allow_private:
        try:
            addresses = resolve(target.host, target.port)
        except (OSError, UnicodeError):
            raise WebhookRefused(f"webhook host {target.host!r} does not resolve") from None
        _checked(target, addresses, allow_private)
    return url


def event_id(key: bytes, job_id: str, event: str) -> str:
    """The webhook-id of a job's `start` or `completed` event: the same whichever process sends it and
    however often (a re-run, the reconciler re-sending a lost event), so receivers drop the repeats."""
    mac = hmac.new(key, f"vivify-event.{job_id}.{event}".encode(), hashlib.sha256).digest()
    return "msg_" + base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: bytes, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """What a receiver does: check the signature and that the timestamp is fresh."""
    try:
        msg_id, ts = headers["webhook-id"], int(headers["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    expected = sign(secret, msg_id, ts, body)
    return any(hmac.compare_digest(expected, s) for s in headers.get("webhook-signature", "").split())


def is_retryable(exc: BaseException) -> bool:
    """Worth another attempt: a 5xx, a 429 or a network error. Any other 4xx is the receiver's answer."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, httpx.TransportError)


def describe(exc: BaseException) -> str:
    """A failure in words fit for logs: the status or the exception's type, never its message (httpx
    messages carry the URL)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


def celery_argsrepr(url: str, event: str, payload: dict[str, Any], msg_id: str) -> str:
    """What Celery prints for a delivery task's args (`argsrepr`): the URL redacted, no payload."""
    return repr([redact_url(url), event, {"id": payload.get("id")}, msg_id])


async def _resolve_within_deadline(host: str, port: int) -> list[str]:
    """resolve() in a daemon thread, so the attempt's deadline also bounds a slow DNS answer (the thread
    is abandoned, not joined, when the deadline passes; asyncio's default executor would be joined)."""
    future: concurrent.futures.Future[list[str]] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(resolve(host, port))
        except concurrent.futures.InvalidStateError:
            pass  # the attempt gave up waiting (deadline): nobody wants the answer
        except BaseException as exc:  # handed to the awaiting side
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_exception(exc)

    threading.Thread(target=run, name="webhook-resolve", daemon=True).start()
    return await asyncio.wrap_future(future)


async def _post(
    target: _Target,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
    allow_private: bool,
    ssl_context: ssl.SSLContext | None,
) -> int:
    if target.literal is not None:
        addresses = [str(target.literal)]
    else:
        try:
            addresses = await _resolve_within_deadline(target.host, target.port)
        except (OSError, UnicodeError):
            raise httpx.ConnectError(f"webhook host {target.host!r} does not resolve") from None
    checked = _checked(target, addresses, allow_private)
    extensions: dict[str, Any] = {}
    if target.url.scheme == "https":
        # httpcore uses this name for SNI and certificate hostname checks instead of the URL's host,
        # which is now the pinned IP (httpcore/_async/connection.py, `_connect`).
        extensions["sni_hostname"] = target.host.rstrip(".")
    # trust_env=False: a proxy from the environment would resolve the name itself, undoing the pin.
    # follow_redirects=False: a redirect must not lead the request somewhere the check refused.
    async with httpx.AsyncClient(
        timeout=timeout_s, follow_redirects=False, trust_env=False, verify=ssl_context or True
    ) as client:
        failure: httpx.ConnectError | None = None
        for addr in checked:  # the next checked address only when this one refused the connection
            request = client.build_request(
                "POST",
                target.url.copy_with(host=str(addr)),
                content=body,
                headers={**headers, "host": target.netloc},
                extensions=extensions,
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                failure = exc
                continue
            try:
                read = 0
                async for chunk in response.aiter_raw():  # raw: no decompression bomb either
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
            finally:
                await response.aclose()
            response.raise_for_status()
            return response.status_code
        assert failure is not None  # `checked` is never empty
        raise failure


def deliver(
    url: str,
    event: str,
    payload: dict[str, Any],
    secret: bytes,
    *,
    timeout_s: float = 5.0,
    msg_id: str | None = None,
    allow_private: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """POST one signed event, once; returns the receiver's status. Raises WebhookRefused when the URL
    or the address its host resolves to now is not allowed, httpx.HTTPStatusError for a 4xx/5xx
    answer and httpx.TransportError when it cannot be reached in `timeout_s` (DeadlineExceeded for the
    whole attempt, DNS included; see is_retryable). Runs its own event loop: call it from sync code.

    `msg_id`: the event's webhook-id; the caller passes the same one on every attempt so the receiver
    sees one event. `ssl_context`: trust other than the system's CA bundle (tests)."""
    target = _parse(url)
    body = json.dumps({"type": event, "data": payload}, separators=(",", ":"), default=str).encode()
    msg_id = msg_id or "msg_" + secrets.token_urlsafe(12)
    ts = int(time.time())  # fresh per attempt, same id: receivers can de-duplicate
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
        "user-agent": "vivify-webhooks/1",
    }

    async def attempt() -> int:
        _shown_url.set(redact_url(url))  # this event loop's context only
        # wait_for cancels the attempt wherever it is: a trickled header or body, a slow DNS answer.
        try:
            return await asyncio.wait_for(
                _post(target, body, headers, timeout_s, allow_private, ssl_context), timeout_s
            )
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"webhook attempt ran past {timeout_s}s") from None

    return asyncio.run(attempt())
