"""POST /api/v1/jobs with an Idempotency-Key, a webhook and an animator choice."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import migrations
from app.core import service
from app.core.config import Settings
from app.core.queue import PRIORITY_LONG, PRIORITY_PREVIEW
from app.core.tables import Job
from app.core.visitors import Visitor
from app.web.main import create_app
from tests.app.api_helpers import broker_messages, make_settings


def post(client: TestClient, photo: bytes, key: str | bytes | None = None, **fields: str):
    headers = {"Idempotency-Key": key} if key is not None else {}
    files = {"photo": ("me.jpg", photo, "image/jpeg")}
    return client.post("/api/v1/jobs", data={"consent": "true", **fields}, files=files, headers=headers)


def row(app: FastAPI, job_id: str) -> Job:
    with app.state.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_a_retried_submit_returns_the_same_job_and_spends_nothing(
    client: TestClient, settings: Settings, small_portrait_jpeg: bytes
) -> None:
    first = post(client, small_portrait_jpeg, "key-123")
    assert first.status_code == 202, first.text
    again = post(client, small_portrait_jpeg, "key-123")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert client.get("/api/v1/quota").json()["used"] == 1
    assert len(broker_messages(settings)) == 1  # sent to the workers once
    assert len(client.get("/api/v1/jobs").json()["jobs"]) == 1


def test_another_key_or_no_key_makes_a_new_job(client: TestClient, small_portrait_jpeg: bytes) -> None:
    ids = {
        post(client, small_portrait_jpeg, "a").json()["id"],
        post(client, small_portrait_jpeg, "b").json()["id"],
        post(client, small_portrait_jpeg).json()["id"],
        post(client, small_portrait_jpeg).json()["id"],
    }
    assert len(ids) == 4


def test_keys_belong_to_one_visitor(
    client: TestClient, other_client: TestClient, small_portrait_jpeg: bytes
) -> None:
    mine = post(client, small_portrait_jpeg, "shared").json()["id"]
    r = post(other_client, small_portrait_jpeg, "shared")
    assert r.status_code == 202 and r.json()["id"] != mine


def test_a_retry_after_the_allowance_is_spent_still_gets_its_job(
    tmp_path: Path, small_portrait_jpeg: bytes
) -> None:
    s = make_settings(tmp_path, free_animations_per_day=1)
    migrations.upgrade(s.resolved_database_url)
    with TestClient(create_app(s)) as c:
        first = post(c, small_portrait_jpeg, "only-one")
        assert first.status_code == 202
        assert post(c, small_portrait_jpeg, "only-one").json()["id"] == first.json()["id"]
        assert post(c, small_portrait_jpeg, "another").status_code == 429


@pytest.mark.parametrize("key", ["", " ", "x" * 129, "naïve", "a b"])
def test_a_malformed_key_is_a_422(client: TestClient, small_portrait_jpeg: bytes, key: str) -> None:
    r = post(client, small_portrait_jpeg, key.encode())  # raw UTF-8 bytes
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_idempotency_key"


def test_a_racing_duplicate_is_rolled_back_and_names_the_first_job(
    app: FastAPI, settings: Settings, small_portrait_jpeg: bytes
) -> None:
    """Two submits that both passed the lookup: the unique index lets one commit; the other's photo
    and allowance go, and it answers with the first job."""
    checked = anyio.run(service.analyse_upload, small_portrait_jpeg, settings)
    visitor = Visitor(id="v-race", ip="127.0.0.1", ip_hash="h", is_new=False)
    args = dict(
        settings=settings,
        store=app.state.store,
        producer=app.state.producer,
        metrics=app.state.metrics,
        visitor=visitor,
        checked=checked,
        motion=None,
        seed=1,
        idempotency_key="race",
    )
    with app.state.sessions() as s1:
        first = service.create_job(session=s1, **args)
    photos_before = sorted(p.name for p in Path(settings.resolved_storage_url[7:]).rglob("*") if p.is_file())
    with app.state.sessions() as s2, pytest.raises(service.DuplicateSubmit) as dup:
        service.create_job(session=s2, **args)
    assert dup.value.job.id == first.id
    photos_after = sorted(p.name for p in Path(settings.resolved_storage_url[7:]).rglob("*") if p.is_file())
    assert photos_after == photos_before  # the loser's photo is gone
    with app.state.sessions() as s3:
        from app.core.visitors import allowance

        assert allowance(s3, settings, visitor).used == 1


def test_a_private_webhook_is_refused(client: TestClient, small_portrait_jpeg: bytes) -> None:
    for url in ("http://127.0.0.1:9/hook", "http://10.0.0.5/hook", "http://[::1]/x", "ftp://example.com/x"):
        r = post(client, small_portrait_jpeg, webhook=url)
        assert r.status_code == 422, url
        assert r.json()["error"]["code"] == "invalid_webhook"
    assert client.get("/api/v1/quota").json()["used"] == 0


def test_a_public_webhook_is_stored_with_its_events(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    r = post(client, small_portrait_jpeg, webhook="https://93.184.216.34/hooks/vivify")
    assert r.status_code == 202, r.text
    job = row(app, r.json()["id"])
    assert job.webhook_url == "https://93.184.216.34/hooks/vivify"
    assert job.webhook_events == ["start", "completed"]  # progress only when asked for


def test_events_filter_is_parsed_and_checked(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    hook = "https://93.184.216.34/h"
    r = post(client, small_portrait_jpeg, webhook=hook, webhook_events_filter="progress, completed")
    assert r.status_code == 202, r.text
    assert row(app, r.json()["id"]).webhook_events == ["progress", "completed"]
    bad = post(client, small_portrait_jpeg, webhook=hook, webhook_events_filter="start,explode")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_webhook_events"
    orphan = post(client, small_portrait_jpeg, webhook_events_filter="start")
    assert orphan.status_code == 422 and orphan.json()["error"]["code"] == "invalid_webhook"


def test_private_webhooks_when_the_setting_allows(tmp_path: Path, small_portrait_jpeg: bytes) -> None:
    s = make_settings(tmp_path, webhooks_allow_private=True)
    migrations.upgrade(s.resolved_database_url)
    app = create_app(s)
    with TestClient(app) as c:
        r = post(c, small_portrait_jpeg, webhook="http://127.0.0.1:8123/hook")
        assert r.status_code == 202, r.text
        assert row(app, r.json()["id"]).webhook_url == "http://127.0.0.1:8123/hook"


def test_a_job_may_ask_for_an_offered_animator(tmp_path: Path, small_portrait_jpeg: bytes) -> None:
    s = make_settings(tmp_path, extra_animators="diffusion", model="org/svd-xt")
    migrations.upgrade(s.resolved_database_url)
    app = create_app(s)
    with TestClient(app) as c:
        default = post(c, small_portrait_jpeg)
        chosen = post(c, small_portrait_jpeg, animator="diffusion")
        refused = post(c, small_portrait_jpeg, animator="portrait")
    assert default.json()["animator"] == "push-in" and chosen.json()["animator"] == "diffusion"
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unknown_animator"
    preview, long = row(app, default.json()["id"]), row(app, chosen.json()["id"])
    assert (preview.priority, long.priority) == (PRIORITY_PREVIEW, PRIORITY_LONG)
    assert preview.model == "org/svd-xt" and long.model is None  # the model belongs to the default animator


def test_webhook_secret_is_derived_from_the_secret_key_unless_set(tmp_path: Path) -> None:
    a = make_settings(tmp_path, secret_key="one")
    b = make_settings(tmp_path, secret_key="two")
    assert a.webhook_signing_key != b.webhook_signing_key and len(a.webhook_signing_key) == 32
    assert a.webhook_signing_key == make_settings(tmp_path, secret_key="one").webhook_signing_key
    given = make_settings(tmp_path, webhook_secret="whsec_" + "QUJD")  # base64 of ABC
    assert given.webhook_signing_key == b"ABC" and given.webhook_secret_text == "whsec_QUJD"
    assert make_settings(tmp_path, webhook_secret="plain").webhook_signing_key == b"plain"


def test_canceling_a_queued_job_sends_its_completed_event(
    client: TestClient, settings: Settings, small_portrait_jpeg: bytes
) -> None:
    hook = "https://93.184.216.34/h"
    job = post(client, small_portrait_jpeg, webhook=hook).json()
    quiet = post(client, small_portrait_jpeg, webhook=hook, webhook_events_filter="start").json()
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 202
    assert client.post(f"/api/v1/jobs/{quiet['id']}/cancel").status_code == 202
    hooks = [m.read_text() for m in broker_messages(settings) if "vivify.webhook" in m.read_text()]
    assert len(hooks) == 1  # only the job whose filter has `completed`
    assert '"routing_key": "webhooks"' in hooks[0]


def _another_photo(photo: bytes) -> bytes:
    """The same portrait saved again: other bytes, the same picture."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(buf, "JPEG", quality=80)
    assert buf.getvalue() != photo
    return buf.getvalue()


def test_a_key_reused_with_other_fields_is_a_422_and_spends_nothing(
    client: TestClient, app: FastAPI, settings: Settings, small_portrait_jpeg: bytes
) -> None:
    hook = "https://93.184.216.34/h"
    fields = {"motion": "look left", "seed": "7", "webhook": hook, "webhook_events_filter": "start,completed"}
    first = post(client, small_portrait_jpeg, "k-1", **fields)
    assert first.status_code == 202, first.text
    changed = [
        (_another_photo(small_portrait_jpeg), fields),
        (small_portrait_jpeg, {**fields, "motion": "look right"}),
        (small_portrait_jpeg, {**fields, "seed": "8"}),
        (small_portrait_jpeg, {k: v for k, v in fields.items() if k != "seed"}),  # now a random seed
        (small_portrait_jpeg, {**fields, "webhook": "https://93.184.216.34/other"}),
        (small_portrait_jpeg, {**fields, "webhook_events_filter": "completed"}),
    ]
    for photo, other in changed:
        r = post(client, photo, "k-1", **other)
        assert r.status_code == 422, (other, r.text)
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {
            "error": {"code": "idempotency_key_reused", "message": r.json()["error"]["message"]}
        }
        assert "Idempotency-Key" in r.json()["error"]["message"]
    # The same fields are still a replay, and nothing above made a job or spent the allowance.
    again = post(client, small_portrait_jpeg, "k-1", **fields)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert client.get("/api/v1/quota").json()["used"] == 1
    assert len(client.get("/api/v1/jobs").json()["jobs"]) == 1
    assert len([m for m in broker_messages(settings) if "vivify.animate" in m.read_text()]) <= 1
    stored = row(app, first.json()["id"]).request_fingerprint
    assert stored is not None and len(stored) == 64


def test_a_key_reused_for_another_animator_is_a_422(tmp_path: Path, small_portrait_jpeg: bytes) -> None:
    s = make_settings(tmp_path, extra_animators="diffusion")
    migrations.upgrade(s.resolved_database_url)
    with TestClient(create_app(s)) as c:
        first = post(c, small_portrait_jpeg, "k-anim", animator="diffusion")
        assert first.status_code == 202, first.text
        r = post(c, small_portrait_jpeg, "k-anim")  # the default animator this time
        assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused"
        same = post(c, small_portrait_jpeg, "k-anim", animator="diffusion")
        assert same.status_code == 200 and same.json()["id"] == first.json()["id"]


def test_without_a_key_no_fingerprint_and_old_jobs_without_one_still_replay(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    plain = post(client, small_portrait_jpeg)
    assert row(app, plain.json()["id"]).request_fingerprint is None
    keyed = post(client, small_portrait_jpeg, "k-old", motion="smile").json()["id"]
    # A job stored before fingerprints existed (the column is NULL): there is nothing to compare.
    with app.state.sessions() as session:
        job = session.get(Job, keyed)
        assert job is not None
        job.request_fingerprint = None
        session.commit()
    r = post(client, _another_photo(small_portrait_jpeg), "k-old", motion="nod")
    assert r.status_code == 200 and r.json()["id"] == keyed


def test_fingerprint_covers_each_field_and_a_racing_duplicate_is_checked_too() -> None:
    from app.core.errors import Invalid
    from app.core.service.create import JobRequest, check_replay, request_fingerprint

    base = JobRequest(
        photo=b"abc", consent=True, motion="nod", seed="1", animator="a", webhook="w", webhook_events="x"
    )
    prints = {request_fingerprint(base)}
    for change in (
        {"photo": b"abd"},
        {"motion": "smile"},
        {"seed": "2"},
        {"seed": None},
        {"animator": "b"},
        {"webhook": None},
        {"webhook_events": "y"},
    ):
        prints.add(request_fingerprint(JobRequest(**{**base.__dict__, **change})))
    assert len(prints) == 8  # every field changes the fingerprint
    assert request_fingerprint(JobRequest(**{**base.__dict__, "consent": False})) == request_fingerprint(base)
    job = Job(request_fingerprint=request_fingerprint(base))
    assert check_replay(job, request_fingerprint(base)) is job
    with pytest.raises(Invalid) as refused:
        check_replay(job, request_fingerprint(JobRequest(**{**base.__dict__, "seed": "9"})))
    assert refused.value.code == "idempotency_key_reused"
