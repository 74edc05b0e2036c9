"""Client addresses are normalised before they key the allowance and the rate limits: an IPv4 client
seen in IPv6 form (a dual-stack socket's ::ffff:a.b.c.d, NAT64, 6to4) is that IPv4 address, not the
shared /64 `::/64` that every mapped address fell into."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import migrations
from app.core.config import Settings
from app.core.visitors import client_ip, hash_ip, ip_key, normalize_ip
from app.web.main import create_app
from tests.app.api_helpers import make_settings, post_job


@pytest.fixture
def s(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def test_two_mapped_clients_are_two_keys_and_a_mapped_address_is_its_ipv4(s: Settings) -> None:
    assert hash_ip(s, "::ffff:1.2.3.4") != hash_ip(s, "::ffff:5.6.7.8")
    assert hash_ip(s, "::ffff:1.2.3.4") == hash_ip(s, "1.2.3.4")
    assert hash_ip(s, "::FFFF:0102:0304") == hash_ip(s, "1.2.3.4")  # the same address in hex
    assert ip_key("::ffff:1.2.3.4") == "1.2.3.4"
    assert normalize_ip("::ffff:1.2.3.4") == "1.2.3.4"


@pytest.mark.parametrize(
    ("wrapped", "ipv4"),
    [
        ("64:ff9b::1.2.3.4", "1.2.3.4"),  # NAT64 well-known prefix
        ("64:ff9b::c633:6407", "198.51.100.7"),
        ("64:ff9b:1:c633:64:700::", "198.51.100.7"),  # NAT64 local-use /48 (RFC 8215)
        ("2002:c633:6407::1", "198.51.100.7"),  # 6to4: the /48 belongs to the IPv4 host
        ("2002:c633:6407:abcd::99", "198.51.100.7"),  # another /64 of the same 6to4 host
    ],
)
def test_nat64_and_6to4_addresses_count_as_the_ipv4_inside(s: Settings, wrapped: str, ipv4: str) -> None:
    assert hash_ip(s, wrapped) == hash_ip(s, ipv4)
    assert normalize_ip(wrapped) == ipv4


def test_native_ipv6_is_still_keyed_by_its_64(s: Settings) -> None:
    assert hash_ip(s, "2001:db8:1:2::1") == hash_ip(s, "2001:db8:1:2:ffff::9")
    assert hash_ip(s, "2001:db8:1:2::1") != hash_ip(s, "2001:db8:1:3::1")
    assert hash_ip(s, "2001:DB8:1:2::0001") == hash_ip(s, "2001:db8:1:2::1")
    assert hash_ip(s, "::1") != hash_ip(s, "1.2.3.4")
    assert hash_ip(s, "fe80::1%eth0") == hash_ip(s, "fe80::2")  # the zone is ours, not the client's
    assert hash_ip(s, "not-an-address") != hash_ip(s, "1.2.3.4")


def test_client_ip_unwraps_the_peer_and_the_forwarded_hops() -> None:
    proxies = ["127.0.0.1", "10.0.0.0/8"]
    assert client_ip("::ffff:203.0.113.9", None, proxies) == "203.0.113.9"
    # A mapped proxy address is still the trusted proxy, and a mapped hop is its IPv4 client.
    assert client_ip("::ffff:127.0.0.1", "::ffff:198.51.100.7", proxies) == "198.51.100.7"
    assert client_ip("::ffff:10.1.2.3", "6.6.6.6, ::ffff:1.2.3.4, ::ffff:10.0.0.7", proxies) == "1.2.3.4"
    assert client_ip("::ffff:203.0.113.9", "1.2.3.4", proxies) == "203.0.113.9"  # untrusted: header ignored


def test_mapped_clients_have_their_own_allowance_and_rate_limit(
    tmp_path: Path, small_portrait_jpeg: bytes
) -> None:
    """Through the app as a dual-stack server sees them: each mapped peer counts as its IPv4 address."""
    s = make_settings(tmp_path, free_animations_per_day=1, rate_limit="3/minute")
    migrations.upgrade(s.resolved_database_url)
    app = create_app(s)
    with (
        TestClient(app, client=("::ffff:192.0.2.10", 5000)) as a,
        TestClient(app, client=("::ffff:192.0.2.20", 5001)) as b,
        TestClient(app, client=("192.0.2.10", 5002)) as a_again,  # a's address over IPv4, a new cookie
    ):
        assert post_job(a, small_portrait_jpeg).status_code == 202
        assert post_job(b, small_portrait_jpeg).status_code == 202  # not a's /64: its own allowance
        r = post_job(a_again, small_portrait_jpeg)
        assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"  # a's address, spent
        # The rate limit: a has used 1 of 3 (a_again's upload counted for the address too).
        assert a.post("/api/v1/jobs/nope/cancel").status_code == 404
        limited = a.post("/api/v1/jobs/nope/cancel")
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        assert b.post("/api/v1/jobs/nope/cancel").status_code == 404  # b's address has its own limit
