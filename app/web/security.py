"""Security headers on every response and a refusal of cross-site state-changing requests.

Pure ASGI middleware (not BaseHTTPMiddleware) so streamed downloads and event streams pass untouched.
"""

from __future__ import annotations

from urllib.parse import urlparse

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import Settings

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _origin_of(url: str | None) -> str:
    if not url:
        return ""
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}" if parsed.scheme and parsed.netloc else ""


def content_security_policy(settings: Settings) -> str:
    s3 = _origin_of(settings.s3_public_endpoint_url or settings.s3_endpoint_url)
    if not (settings.resolved_storage_url.startswith("s3://") and s3):
        s3 = ""
    extra = f" {s3}" if s3 else ""
    return (
        "default-src 'self'; "
        f"img-src 'self' data: blob:{extra}; "
        f"media-src 'self' blob:{extra}; "
        "script-src 'self'; style-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    )


def security_headers(settings: Settings) -> list[tuple[bytes, bytes]]:
    headers = {
        "content-security-policy": content_security_policy(settings),
        "x-content-type-options": "nosniff",
        "referrer-policy": "same-origin",
        "x-frame-options": "DENY",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    }
    if settings.is_production:
        headers["strict-transport-security"] = "max-age=31536000; includeSubDomains"
    return [(k.encode(), v.encode()) for k, v in headers.items()]


def is_cross_site(method: str, headers: dict[str, str]) -> bool:
    """True for a state-changing request a browser sent on behalf of another site.

    Browsers send Sec-Fetch-Site (modern) and Origin (on every cross-origin POST); clients without a
    browser (curl, scripts) send neither and are not a CSRF vector.
    """
    if method not in UNSAFE_METHODS:
        return False
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False
    host = headers.get("host", "")
    parsed = urlparse(origin)
    return origin == "null" or not parsed.netloc or parsed.netloc.lower() != host.lower()


# The interactive docs (Swagger UI at /docs, ReDoc at /redoc, their files served from here by
# fastapi-offline) start with an inline bootstrap script and style their own elements; only those two
# pages get a policy that allows it (they show the public schema, no visitor data). Nothing is loaded
# from another origin; ReDoc's search runs in a worker made from a blob.
DOCS_PATHS = frozenset({"/docs", "/redoc"})
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.headers = security_headers(settings)
        self.docs_headers = [
            (k, DOCS_CSP.encode() if k == b"content-security-policy" else v) for k, v in self.headers
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        req_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                own = self.docs_headers if path in DOCS_PATHS else self.headers
                extra = [(k, v) for k, v in own if k not in names]
                if path.startswith("/api/") and b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        if is_cross_site(scope["method"], req_headers):
            from app.web.errors import error_response

            response = error_response(403, "cross_site", "Cross-site requests cannot change anything here.")
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)
