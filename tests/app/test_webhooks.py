"""Webhook signing, URL checks, and delivery to a real HTTP receiver on loopback."""

import json
from collections.abc import Iterator

import httpx
import pytest

from app.core.webhooks import WebhookRefused, check_url, deliver, parse_events, sign, verify
from tests.fixtures.webhook_receiver import WebhookReceiver, answers

SECRET = b"s3cret"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(answers([503, 503]))
    yield r
    r.close()


def test_delivery_is_signed_and_retried_until_accepted(receiver: WebhookReceiver) -> None:
    status = deliver(receiver.url, "completed", {"id": "job1", "status": "succeeded"}, SECRET, backoff_s=0.01)
    assert status == 204
    assert len(receiver.deliveries) == 3  # two 503s, then success
    ids = {d.headers["webhook-id"] for d in receiver.deliveries}
    assert len(ids) == 1  # same message id on every retry
    headers, body = receiver.deliveries[-1].headers, receiver.deliveries[-1].body
    assert verify(SECRET, headers, body)
    assert not verify(b"other", headers, body)
    assert not verify(SECRET, headers, body + b" ")
    assert json.loads(body) == {"type": "completed", "data": {"id": "job1", "status": "succeeded"}}


def test_client_errors_are_not_retried() -> None:
    r = WebhookReceiver(answers([], then=404))
    try:
        with pytest.raises(httpx.HTTPStatusError):
            deliver(r.url, "start", {}, SECRET, backoff_s=0.01)
        assert len(r.deliveries) == 1
    finally:
        r.close()


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
