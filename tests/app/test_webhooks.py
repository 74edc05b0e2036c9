"""Webhook signing, URL checks, and delivery to a real HTTP receiver on loopback."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from app.webhooks import WebhookRefused, check_url, deliver, parse_events, sign, verify

SECRET = b"s3cret"


class Receiver:
    def __init__(self, fail_first: int = 0, status: int = 204) -> None:
        self.fail_first = fail_first
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(503 if len(receiver.requests) <= receiver.fail_first else receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.server.shutdown()


def test_delivery_is_signed_and_retried_until_accepted(receiver: Receiver) -> None:
    status = deliver(receiver.url, "completed", {"id": "job1", "status": "succeeded"}, SECRET, backoff_s=0.01)
    assert status == 204
    assert len(receiver.requests) == 3  # two 503s, then success
    ids = {h["webhook-id"] for h, _ in receiver.requests}
    assert len(ids) == 1  # same message id on every retry
    headers, body = receiver.requests[-1]
    assert verify(SECRET, headers, body)
    assert not verify(b"other", headers, body)
    assert not verify(SECRET, headers, body + b" ")
    assert json.loads(body) == {"type": "completed", "data": {"id": "job1", "status": "succeeded"}}


def test_client_errors_are_not_retried() -> None:
    r = Receiver(fail_first=0, status=404)
    try:
        with pytest.raises(httpx.HTTPStatusError):
            deliver(r.url, "start", {}, SECRET, backoff_s=0.01)
        assert len(r.requests) == 1
    finally:
        r.server.shutdown()


def test_private_and_loopback_addresses_are_refused_unless_allowed() -> None:
    for url in (
        "http://127.0.0.1/x",
        "http://10.0.0.5/x",
        "http://[::1]/x",
        "http://169.254.169.254/",
        "http://localhost/",
    ):
        with pytest.raises(WebhookRefused):
            check_url(url)
    assert check_url("http://127.0.0.1:9/x", allow_private=True)
    for url in ("ftp://example.com/", "/relative", "javascript:alert(1)"):
        with pytest.raises(WebhookRefused):
            check_url(url, allow_private=True)


def test_stale_timestamps_fail_verification() -> None:
    body = b"{}"
    headers = {
        "webhook-id": "m",
        "webhook-timestamp": "1000",
        "webhook-signature": sign(SECRET, "m", 1000, body),
    }
    assert not verify(SECRET, headers, body)


def test_event_filter() -> None:
    assert parse_events(None) == ["start", "completed"]
    assert parse_events("progress, completed,progress") == ["progress", "completed"]
    with pytest.raises(ValueError, match="unknown webhook events"):
        parse_events("start,finished")
