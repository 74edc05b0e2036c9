"""Webhooks for integrators, in the manner of Replicate and the Standard Webhooks spec.

One call of deliver() is one attempt; retries belong to the delivery task (worker/webhooks.py),
which re-queues the event through Celery with backoff instead of sleeping in the worker.

Each delivery carries `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256
of "id.timestamp.body">`. Deliveries go to public addresses only unless a setting allows private ones,
since a webhook URL is otherwise a way to make our servers call into our own network (SSRF).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from typing import Any
from urllib.parse import urlparse

import httpx

EVENTS = ("start", "progress", "completed")


class WebhookRefused(ValueError):
    """The URL may not receive webhooks."""


def parse_events(text: str | None) -> list[str]:
    """ "start,completed" → ["start", "completed"]; empty → every event except progress (noisy)."""
    if not text:
        return ["start", "completed"]
    events = [e.strip() for e in text.split(",") if e.strip()]
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise ValueError(f"unknown webhook events {unknown}; expected some of {', '.join(EVENTS)}")
    return list(dict.fromkeys(events))


def check_url(url: str, *, allow_private: bool = False) -> str:
    """Refuse non-HTTP(S) URLs and hosts that resolve to private, loopback or link-local addresses."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise WebhookRefused("webhook must be an absolute http(s) URL")
    if len(url) > 2000:
        raise WebhookRefused("webhook URL is too long")
    if allow_private:
        return url
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise WebhookRefused(f"webhook host {parsed.hostname!r} does not resolve") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_global:
            raise WebhookRefused("webhooks to private, loopback or link-local addresses are not allowed")
    return url


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


def deliver(
    url: str,
    event: str,
    payload: dict[str, Any],
    secret: bytes,
    *,
    timeout_s: float = 5.0,
    msg_id: str | None = None,
) -> int:
    """POST one signed event, once; returns the receiver's status. Raises httpx.HTTPStatusError for a
    4xx/5xx answer and httpx.TransportError when it cannot be reached (see is_retryable).

    `msg_id`: the event's webhook-id; the caller passes the same one on every attempt so the receiver
    sees one event."""
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
    # follow_redirects=False: a redirect must not lead the request somewhere check_url refused.
    response = httpx.post(url, content=body, headers=headers, timeout=timeout_s, follow_redirects=False)
    response.raise_for_status()
    return response.status_code
