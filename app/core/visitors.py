"""Anonymous visitors: a signed cookie names them, their client IP (hashed) backs up the daily allowance.

The IP is never stored in the clear: submissions keep an HMAC of it (IPv6 by /64, so hopping within
one's own prefix does not reset the allowance), which is enough to count and useless to anyone else.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal, TypedDict

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.core.addresses import IPAddress, embedded_ipv4
from app.core.config import Settings
from app.core.tables import Submission, utcnow

COOKIE_NAME = "vivify_visitor"
COOKIE_MAX_AGE_S = 365 * 24 * 3600
ALLOWANCE_WINDOW = timedelta(hours=24)
_SALT = "vivify.visitor.v1"


@dataclass(frozen=True)
class Visitor:
    id: str
    ip: str
    ip_hash: str
    is_new: bool  # no valid cookie came with the request: set one on the response


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key.get_secret_value(), salt=_SALT)


def sign_visitor_id(settings: Settings, visitor_id: str) -> str:
    return _serializer(settings).dumps(visitor_id)


def read_visitor_cookie(settings: Settings, value: str | None) -> str | None:
    """The visitor id in a cookie, or None when missing, forged or malformed."""
    if not value or len(value) > 512:
        return None
    try:
        visitor_id = _serializer(settings).loads(value)
    except BadSignature:
        return None
    if not isinstance(visitor_id, str) or not 16 <= len(visitor_id) <= 64:
        return None
    return visitor_id


def new_visitor_id() -> str:
    return secrets.token_urlsafe(18)


class CookieOptions(TypedDict):
    max_age: int
    httponly: bool
    samesite: Literal["lax", "strict", "none"]
    secure: bool
    path: str


def cookie_kwargs(settings: Settings) -> CookieOptions:
    return {
        "max_age": COOKIE_MAX_AGE_S,
        "httponly": True,
        "samesite": "lax",
        "secure": settings.is_production,
        "path": "/",
    }


@lru_cache(maxsize=16)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies if p.strip())


def parse_ip(ip: str) -> IPAddress | None:
    """The address in `ip`, an IPv6 wrapping of an IPv4 address unwrapped to it; None if not one."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        inner = embedded_ipv4(addr)
        if inner is not None:
            return inner
        if addr.scope_id:  # fe80::1%eth0: the zone names our interface, not the client
            addr = ipaddress.IPv6Address(int(addr))
    return addr


def normalize_ip(ip: str) -> str:
    """`ip` in one canonical text (::FFFF:1.2.3.4 → 1.2.3.4, 2001:DB8::0001 → 2001:db8::1); text that
    is no address comes back as it is."""
    addr = parse_ip(ip)
    return str(addr) if addr is not None else ip


def _is_trusted(ip: str, proxies: tuple[str, ...]) -> bool:
    addr = parse_ip(ip)
    if addr is None:
        return False
    return any(addr in net for net in _networks(proxies))


def client_ip(peer: str | None, forwarded_for: str | None, trusted_proxies: list[str]) -> str:
    """The client's address, normalised (normalize_ip). X-Forwarded-For counts only when the peer is a
    trusted proxy; then the right-most address that is not itself a trusted proxy is the client (the
    left part is client-made)."""
    peer = normalize_ip(peer or "0.0.0.0")
    proxies = tuple(trusted_proxies)
    if not forwarded_for or not proxies or not _is_trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if parse_ip(hop) is None:
            return peer  # a garbled header: fall back to what we can see
        if not _is_trusted(hop, proxies):
            return normalize_ip(hop)
    return normalize_ip(hops[0]) if hops else peer


def ip_key(ip: str) -> str:
    """What one client's addresses share: an IPv4 address (also when wrapped in IPv6), an IPv6 /64."""
    addr = parse_ip(ip)
    if addr is None:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{addr}/64", strict=False))
    return str(addr)


def hash_ip(settings: Settings, ip: str) -> str:
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, b"ip:" + ip_key(ip).encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Allowance:
    limit: int
    used: int
    resets_at: datetime | None  # when the oldest counted submission stops counting

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def retry_after_s(self, now: datetime | None = None) -> int:
        if self.resets_at is None:
            return 60
        from app.core.schemas import as_utc

        delta = (as_utc(self.resets_at) - (now or utcnow())).total_seconds()
        return max(1, int(delta) + 1)


def allowance(
    session: Session, settings: Settings, visitor: Visitor, now: datetime | None = None
) -> Allowance:
    """Submissions in the last 24 h by this cookie OR this address: a new cookie alone resets nothing."""
    since = (now or utcnow()) - ALLOWANCE_WINDOW
    mine = or_(Submission.visitor_id == visitor.id, Submission.ip_hash == visitor.ip_hash)
    used, oldest = session.execute(
        select(func.count(), func.min(Submission.created_at)).where(mine, Submission.created_at >= since)
    ).one()
    resets_at = oldest + ALLOWANCE_WINDOW if oldest is not None else None
    return Allowance(limit=settings.free_animations_per_day, used=int(used or 0), resets_at=resets_at)


def record_submission(session: Session, visitor: Visitor) -> None:
    session.add(Submission(visitor_id=visitor.id, ip_hash=visitor.ip_hash))
