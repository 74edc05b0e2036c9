"""HEAD wherever GET works (RFC 9110 §9.3.2): uptime checkers and link checkers use HEAD.

FastAPI routes answer only the methods they name, so `HEAD /` was a 405. This middleware serves a HEAD
that no route names by the GET route, with the GET's status and headers (Content-Length included) and
no body. Routes that name HEAD themselves (the video and poster: on S3 a URL presigned for HEAD) keep it.
"""

from __future__ import annotations

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or self._head_route(scope):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)

    def _head_route(self, scope: Scope) -> bool:
        """Some route answers HEAD itself."""
        routes = getattr(scope.get("app"), "routes", None) or getattr(self.app, "routes", [])
        return any(route.matches(scope)[0] is Match.FULL for route in routes)
