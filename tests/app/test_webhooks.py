"""Webhook signing, URL checks, and delivery to a real HTTP receiver on loopback."""

import json
from collections.abc import Iterator

import httpx
import pytest

from app.core.webhooks import (
    WebhookRefused,
    check_url,
    deliver,
    is_retryable,
    parse_events,
    sign,
    verify,
)
from tests.fixtures.webhook_receiver import WebhookReceiver, answers

SECRET = b"s3cret"
# The receivers listen on loopback; deliver() itself refuses private addresses unless allowed.


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(answers([503]))
    yield r
    r.close()


def test_delivery_is_signed_and_one_attempt_per_call(receiver: WebhookReceiver) -> None:
    """deliver() never retries by itself (the Celery task does): a 503 is raised after one POST, as
    retryable, and the next call with the same id is the retry the receiver can de-duplicate."""
    payload = {"id": "job1", "status": "succeeded"}
    with pytest.raises(httpx.HTTPStatusError) as refused:
        deliver(receiver.url, "completed", payload, SECRET, msg_id="msg_1", allow_private=True)
    assert is_retryable(refused.value) and len(receiver.deliveries) == 1
    assert deliver(receiver.url, "completed", payload, SECRET, msg_id="msg_1", allow_private=True) == 204
    assert [d.headers["webhook-id"] for d in receiver.deliveries] == ["msg_1", "msg_1"]
    headers, body = receiver.deliveries[-1].headers, receiver.deliveries[-1].body
    assert verify(SECRET, headers, body)
    assert not verify(b"other", headers, body)
    assert not verify(SECRET, headers, body + b" ")
    assert json.loads(body) == {"type": "completed", "data": payload}


def test_client_errors_are_not_retryable_and_network_errors_are() -> None:
    r = WebhookReceiver(answers([429], then=404))
    try:
        with pytest.raises(httpx.HTTPStatusError) as too_many:
            deliver(r.url, "start", {}, SECRET, allow_private=True)
        with pytest.raises(httpx.HTTPStatusError) as not_found:
            deliver(r.url, "start", {}, SECRET, allow_private=True)
        assert is_retryable(too_many.value) and not is_retryable(not_found.value)
        assert len(r.deliveries) == 2
    finally:
        r.close()
    with pytest.raises(httpx.TransportError) as unreachable:
        deliver(r.url, "start", {}, SECRET, timeout_s=2, allow_private=True)  # the receiver is closed now
    assert is_retryable(unreachable.value)
    assert not is_retryable(ValueError("not an HTTP failure"))


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
