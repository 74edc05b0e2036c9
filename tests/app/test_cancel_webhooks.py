"""Canceling a queued job sends its `completed` webhook, whether the API or the page's form cancels it:
the events are taken from the broker and delivered to a real receiver on loopback."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import migrations
from app.core.config import Settings
from app.core.db import session_factory
from app.core.jobs import unannounced_jobs
from app.core.webhooks import deliver, event_id, verify
from app.web.main import create_app
from tests.app.api_helpers import broker_messages, make_settings, post_job
from tests.fixtures.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture
def hook_settings(tmp_path: Path) -> Settings:
    s = make_settings(tmp_path, webhooks_allow_private=True)  # the receiver listens on loopback
    migrations.upgrade(s.resolved_database_url)
    return s


def _webhook_args(settings: Settings) -> list[list[Any]]:
    """The [url, event, payload, msg_id] of every webhook event waiting in the broker."""
    sent = []
    for path in broker_messages(settings):
        message = json.loads(path.read_text())
        if message["headers"]["task"] == "vivify.webhook":
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            sent.append(args)
    return sent


def _deliver_all(settings: Settings) -> None:
    """What the webhook worker does with each queued event."""
    for url, event, payload, msg_id in _webhook_args(settings):
        deliver(
            url,
            event,
            payload,
            settings.webhook_signing_key,
            msg_id=msg_id,
            allow_private=settings.webhooks_allow_private,
        )


def test_the_page_cancel_form_sends_the_completed_webhook_like_the_api(
    hook_settings: Settings, receiver: WebhookReceiver, small_portrait_jpeg: bytes
) -> None:
    with TestClient(create_app(hook_settings)) as client:
        by_api, by_page, quiet = (
            post_job(client, small_portrait_jpeg, webhook=receiver.url, **extra).json()["id"]
            for extra in ({}, {}, {"webhook_events_filter": "start"})
        )
        assert client.post(f"/api/v1/jobs/{by_api}/cancel").status_code == 202
        for job_id in (by_page, quiet):
            r = client.post(f"/jobs/{job_id}/cancel", follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == f"/jobs/{job_id}"
        assert client.get(f"/api/v1/jobs/{by_page}").json()["status"] == "canceled"
        # A second cancel of an ended job only leads back to its page, and announces nothing again.
        assert client.post(f"/jobs/{by_page}/cancel", follow_redirects=False).status_code == 303

    _deliver_all(hook_settings)

    delivered = receiver.accepted()
    assert [d.type for d in delivered] == ["completed", "completed"]  # none for the `start`-only job
    events = {json.loads(d.body)["data"]["id"]: json.loads(d.body)["data"] for d in delivered}
    assert set(events) == {by_api, by_page}
    assert all(data["status"] == "canceled" for data in events.values())
    assert all(verify(hook_settings.webhook_signing_key, d.headers, d.body) for d in delivered)
    # The page's event carries the same Job the API answers with.
    api, page = events[by_api], events[by_page]
    assert set(api) == set(page) and page["urls"]["self"] == f"/api/v1/jobs/{by_page}"
    # Each under the job's one `completed` id, and recorded as handed over: the reconciler sends nothing.
    ids = {json.loads(d.body)["data"]["id"]: d.headers["webhook-id"] for d in delivered}
    key = hook_settings.webhook_signing_key
    assert ids == {job_id: event_id(key, job_id, "completed") for job_id in (by_api, by_page)}
    with session_factory(hook_settings.resolved_database_url)() as session:
        assert unannounced_jobs(session, older_than_s=-60) == []
