"""The second abuse round's small holes, each tried as the attacker did: numbers of any length, forms that
declare a charset that makes lone surrogates, Range headers with thousands of digits, a private /metrics,
IPv6 webhook targets outside global unicast, and HEAD where GET works. Never a 500."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import migrations
from app.core.webhooks import WebhookRefused, check_url
from app.web.main import create_app
from tests.app.api_helpers import SCRAPE, finish_job, make_settings, post_job

HUGE = "9" * 400  # past any float: float() raises OverflowError


def curves_with(number: str) -> str:
    """A motion_curves field whose first yaw sample is `number`, written as the attacker wrote it."""
    samples = ", ".join([number] + ["0"] * 95)
    return '{"fps": 24, "channels": {"yaw": [' + samples + "]}}"


@pytest.mark.parametrize("number", [HUGE, "1" + "0" * 310, "-1" + "0" * 400, "1e400", "9" * 5000])
def test_numbers_of_any_length_in_curves_are_a_422(
    client: TestClient, small_portrait_jpeg: bytes, number: str
) -> None:
    r = post_job(client, small_portrait_jpeg, motion_curves=curves_with(number))
    assert r.status_code == 422, r.text[:300]
    assert r.json()["error"]["code"] == "invalid_motion_curves"
    # The page's form too: its error page, not a 500.
    page = client.post(
        "/jobs",
        files={"photo": ("me.jpg", small_portrait_jpeg, "image/jpeg")},
        data={"consent": "true", "motion_curves": curves_with(number)},
    )
    assert page.status_code == 422 and "We could not use the recorded motion." in page.text


def multipart(fields: dict[str, str], photo: bytes | None, charset: str) -> tuple[bytes, dict[str, str]]:
    """A multipart body built by hand, declaring `charset` on the whole form."""
    boundary = "----vivify-hostile"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode("latin-1")
        for k, v in fields.items()
    ]
    if photo is not None:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="me.jpg"\r\n'
        parts.append((head + "Content-Type: image/jpeg\r\n\r\n").encode() + photo + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}; charset={charset}"}


@pytest.mark.parametrize("charset", ["unicode_escape", "utf-7", "latin-1", "nonsense"])
def test_a_form_declaring_another_charset_is_refused_not_a_500(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes, charset: str
) -> None:
    fields = {"consent": "true", "motion_text": "\\ud800 smile", "motion_curves": curves_with("\\ud800")}
    body, headers = multipart(fields, small_portrait_jpeg, charset)
    for path in ("/api/v1/jobs", "/jobs", "/api/v1/photo-check"):
        r = client.post(path, content=body, headers=headers)
        assert r.status_code == 415, (path, r.status_code, r.text[:200])
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    finish_job(app, job_id)
    again, again_headers = multipart({"motion": "nod"}, None, charset)
    assert (
        client.post(f"/api/v1/jobs/{job_id}/again", content=again, headers=again_headers).status_code == 415
    )
    page = client.post(f"/jobs/{job_id}/again", content=again, headers=again_headers)
    assert page.status_code == 415 and "<html" in page.text.lower()


def test_utf8_declared_or_not_is_read_as_utf8(client: TestClient, small_portrait_jpeg: bytes) -> None:
    for charset in ("utf-8", "UTF8"):
        body, headers = multipart({"consent": "true", "motion": "smile"}, small_portrait_jpeg, charset)
        assert client.post("/api/v1/jobs", content=body, headers=headers).status_code == 202


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_range_of_thousands_of_digits_is_answered_not_a_500(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes, method: str
) -> None:
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    size = len(finish_job(app, job_id))
    url = f"/api/v1/jobs/{job_id}/video"
    digits = "9" * 5000
    start_beyond = client.request(method, url, headers={"Range": f"bytes={digits}-"})
    assert start_beyond.status_code == 416 and start_beyond.headers["content-range"] == f"bytes */{size}"
    open_end = client.request(method, url, headers={"Range": f"bytes=0-{digits}"})
    assert open_end.status_code == 206 and open_end.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
    suffix = client.request(method, url, headers={"Range": f"bytes=-{digits}"})
    assert suffix.status_code == 206 and suffix.headers["content-range"] == f"bytes 0-{size - 1}/{size}"


def test_metrics_are_private(tmp_path: Path, client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = client.get("/metrics", headers=SCRAPE)
    assert scraped.status_code == 200 and "vivify_http_requests_total" in scraped.text
    # Without a token the site's port does not serve them at all.
    settings = make_settings(tmp_path / "open", metrics_token=None)
    migrations.upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as c:
        assert c.get("/metrics").status_code == 404
        assert c.get("/metrics", headers=SCRAPE).status_code == 404


@pytest.mark.parametrize(
    "host",
    ["[fec0::1]", "[3fff::1]", "[2001:db8::1]", "[2001:2::1]", "[fc00::1]", "[ff0e::1]", "[::ffff:10.0.0.1]"],
)
def test_ipv6_webhook_targets_are_allow_listed(host: str) -> None:
    with pytest.raises(WebhookRefused):
        check_url(f"https://{host}/hook")


def test_a_global_unicast_ipv6_webhook_target_is_accepted() -> None:
    assert check_url("https://[2606:4700:4700::1111]/hook") == "https://[2606:4700:4700::1111]/hook"


@pytest.mark.parametrize(
    "path", ["/", "/api/v1/jobs", "/api/v1/quota", "/api/v1/motions", "/healthz", "/readyz"]
)
def test_head_works_wherever_get_does(client: TestClient, path: str) -> None:
    got = client.get(path, headers={"Accept-Encoding": "identity"})
    head = client.head(path, headers={"Accept-Encoding": "identity"})
    assert (head.status_code, head.content) == (got.status_code, b"")
    assert head.headers["content-length"] == got.headers["content-length"]
    assert head.headers["content-type"] == got.headers["content-type"]


def test_head_on_the_video_keeps_its_own_route(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    size = len(finish_job(app, job_id))
    head = client.head(f"/api/v1/jobs/{job_id}/video")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == size
    assert json.loads(client.head("/api/v1/jobs/nope").content or b"null") is None
