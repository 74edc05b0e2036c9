"""Who may do what: the visitor cookie, the allowance, rate limits, cross-site posts, headers, logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import migrations
from app.core.visitors import COOKIE_NAME, client_ip, read_visitor_cookie, sign_visitor_id
from app.web.main import create_app
from tests.app.api_helpers import make_settings, post_job


def _set_cookie(r) -> str:
    headers = [v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(COOKIE_NAME)]
    assert len(headers) == 1, headers
    return headers[0]


def test_visitor_cookie_is_signed_httponly_lax_and_long_lived(client: TestClient) -> None:
    r = client.get("/api/v1/jobs")
    cookie = _set_cookie(r).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "max-age=31536000" in cookie and "secure" not in cookie.replace("httponly", "")
    # Set once: later requests carry it and get no new one.
    assert "set-cookie" not in client.get("/api/v1/jobs").headers


def test_cookie_is_secure_in_production(tmp_path: Path) -> None:
    s = make_settings(tmp_path, env="production", secret_key="x" * 40)
    migrations.upgrade(s.resolved_database_url)
    with TestClient(create_app(s), base_url="https://testserver") as c:
        r = c.get("/api/v1/jobs")
        assert "; secure" in _set_cookie(r).lower()
        assert r.headers["strict-transport-security"].startswith("max-age=")


def test_forged_or_foreign_cookie_is_a_new_visitor(
    client: TestClient,
    other_client: TestClient,
    settings,
    small_portrait_jpeg: bytes,
) -> None:
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    real = client.cookies[COOKIE_NAME]
    visitor_id = read_visitor_cookie(settings, real)
    assert visitor_id is not None
    # The same id signed with another key, a tampered signature and plain garbage all fail.
    other = make_settings(settings.data_dir, secret_key="another-secret-key-entirely")
    for forged in (sign_visitor_id(other, visitor_id), real[:-2] + "xx", visitor_id, "a" * 600):
        assert read_visitor_cookie(settings, forged) is None
        other_client.cookies.set(COOKIE_NAME, forged)
        assert other_client.get(f"/api/v1/jobs/{job_id}").status_code == 404


def test_allowance_429_with_retry_after_not_reset_by_a_new_cookie(
    client: TestClient,
    app,
    small_portrait_jpeg: bytes,
) -> None:
    for _ in range(5):
        assert post_job(client, small_portrait_jpeg).status_code == 202
    r = post_job(client, small_portrait_jpeg)
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
    retry = int(r.headers["retry-after"])
    assert 23 * 3600 < retry <= 24 * 3600 + 1
    assert client.get("/api/v1/quota").json()["remaining"] == 0
    # Clearing cookies alone: same address, so still counted.
    with TestClient(app) as fresh:
        r = post_job(fresh, small_portrait_jpeg)
        assert r.status_code == 429 and "retry-after" in r.headers
        assert fresh.get("/api/v1/quota").json()["remaining"] == 0


def test_allowance_counts_cookie_or_address_behind_a_trusted_proxy(
    tmp_path: Path, small_portrait_jpeg: bytes
) -> None:
    s = make_settings(tmp_path, free_animations_per_day=2, trusted_proxies=["10.0.0.0/8"])
    migrations.upgrade(s.resolved_database_url)
    app = create_app(s)

    def post(c: TestClient, ip: str) -> int:
        files = {"photo": ("a.jpg", small_portrait_jpeg, "image/jpeg")}
        headers = {"X-Forwarded-For": ip}
        return c.post("/api/v1/jobs", data={"consent": "true"}, files=files, headers=headers).status_code

    with (
        TestClient(app, client=("10.0.0.2", 5000)) as behind_proxy,
        TestClient(app, client=("10.0.0.2", 5001)) as second,
        TestClient(app, client=("198.51.100.7", 5002)) as direct,
    ):
        assert post(behind_proxy, "203.0.113.1") == 202
        assert post(behind_proxy, "203.0.113.2") == 202
        assert post(behind_proxy, "203.0.113.3") == 429  # same cookie, new address: still counted
        assert post(second, "203.0.113.4") == 202  # new cookie, new address: a new visitor
        assert post(second, "203.0.113.1") == 429  # new visitor's 2nd: the address 203.0.113.1 is spent
        # An untrusted peer cannot pick its address with the header: its own address counts.
        assert post(direct, "203.0.113.9") == 202
        assert post(direct, "203.0.113.10") == 202
        assert post(direct, "203.0.113.11") == 429


def test_client_ip_trusts_forwarded_for_only_from_trusted_proxies() -> None:
    proxies = ["10.0.0.0/8", "127.0.0.1"]
    assert client_ip("203.0.113.9", "1.2.3.4", proxies) == "203.0.113.9"  # untrusted peer: header ignored
    assert client_ip("10.1.2.3", "1.2.3.4", proxies) == "1.2.3.4"
    assert client_ip("10.1.2.3", "6.6.6.6, 1.2.3.4, 10.0.0.7", proxies) == "1.2.3.4"  # spoofed left part
    assert client_ip("10.1.2.3", "garbage", proxies) == "10.1.2.3"
    assert client_ip("127.0.0.1", None, proxies) == "127.0.0.1"
    assert client_ip("10.1.2.3", "1.2.3.4", []) == "10.1.2.3"


def test_rate_limit_per_visitor_and_ip(tmp_path: Path) -> None:
    s = make_settings(tmp_path, rate_limit="3/minute")
    migrations.upgrade(s.resolved_database_url)
    app = create_app(s)
    with TestClient(app) as c, TestClient(app) as c2:
        for _ in range(3):
            assert c.post("/api/v1/jobs/nope/cancel").status_code == 404
        r = c.post("/api/v1/jobs/nope/cancel")
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        # A new cookie from the same address is limited too.
        assert c2.post("/api/v1/photo-check").status_code == 429
        # Reading is never rate limited.
        assert c.get("/api/v1/jobs").status_code == 200


def test_cross_site_state_changes_are_refused(client: TestClient, small_portrait_jpeg: bytes) -> None:
    files = {"photo": ("a.jpg", small_portrait_jpeg, "image/jpeg")}
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
    ):
        r = client.post("/api/v1/jobs", data={"consent": "true"}, files=files, headers=headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site", headers
        assert client.delete("/api/v1/jobs/x", headers=headers).status_code == 403
    assert client.get("/api/v1/quota").json()["used"] == 0
    same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}
    assert client.post("/api/v1/jobs", data={"consent": "true"}, files=files, headers=same).status_code == 202
    origin_only = {"Origin": "http://testserver"}
    assert (
        client.post("/api/v1/jobs", data={"consent": "true"}, files=files, headers=origin_only).status_code
        == 202
    )
    # Cross-site reads are harmless and allowed (the cookie is SameSite=Lax anyway).
    assert client.get("/api/v1/jobs", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/jobs", "/api/v1/jobs/nope", "/metrics", "/nowhere"])
def test_security_headers_on_every_response(client: TestClient, path: str) -> None:
    h = client.get(path).headers
    csp = h["content-security-policy"]
    directives = ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]
    for directive in [*directives, "base-uri 'none'", "form-action 'self'"]:
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "same-origin"
    assert h["x-frame-options"] == "DENY"


def test_api_json_is_not_cached(client: TestClient) -> None:
    assert client.get("/api/v1/jobs").headers["cache-control"] == "no-store"


def test_logs_hold_no_cookie_or_photo(
    client: TestClient, small_portrait_jpeg: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    post_job(client, small_portrait_jpeg)
    post_job(client, b"<html>")
    cookie = client.cookies[COOKIE_NAME]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert cookie not in text and cookie.split(".")[0] not in text
    assert "JFIF" not in text and "<html>" not in text


def test_racing_uploads_cannot_overdraw_the_allowance(tmp_path: Path, small_portrait_jpeg: bytes) -> None:
    from concurrent.futures import ThreadPoolExecutor

    s = make_settings(tmp_path, free_animations_per_day=3)
    migrations.upgrade(s.resolved_database_url)
    app = create_app(s)
    with TestClient(app) as first:
        first.get("/api/v1/quota")  # get a cookie, then share it across threads
        cookie = first.cookies[COOKIE_NAME]

        def upload(_: int) -> int:
            with TestClient(app, cookies={COOKIE_NAME: cookie}) as c:
                return post_job(c, small_portrait_jpeg).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = sorted(pool.map(upload, range(8)))
        assert statuses.count(202) == 3 and statuses.count(429) == 5, statuses
        assert len(first.get("/api/v1/jobs").json()["jobs"]) == 3
