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


def _is_trusted(ip: str, proxies: tuple[str, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in _networks(proxies))


def client_ip(peer: str | None, forwarded_for: str | None, trusted_proxies: list[str]) -> str:
    """The client's address. X-Forwarded-For counts only when the peer is a trusted proxy; then the
    right-most address that is not itself a trusted proxy is the client (the left part is client-made)."""
    peer = peer or "0.0.0.0"
    proxies = tuple(trusted_proxies)
    if not forwarded_for or not proxies or not _is_trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a garbled header: fall back to what we can see
        if not _is_trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def hash_ip(settings: Settings, ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
        key = str(ipaddress.ip_network(f"{addr}/64", strict=False)) if addr.version == 6 else str(addr)
    except ValueError:
        key = ip
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, b"ip:" + key.encode(), hashlib.sha256).hexdigest()[:32]


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
