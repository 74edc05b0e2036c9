"""No route holds a pooled database connection while it waits on the client's body (real uvicorn, raw
sockets): every route that takes a body is sent its headers and the first bytes of one, and the pool must
have nothing checked out while those requests hang. Then the body never comes: each gets its 408 within
the upload deadline, and a page still answers meanwhile.

Which routes read a body, and when they take a connection (sessions open lazily: the first query does):
- POST /api/v1/jobs, POST /jobs, POST /api/v1/photo-check: the upload form is read first, under its
  deadline and size limit; the service's first query comes after.
- POST /api/v1/jobs/{id}/again, POST /jobs/{id}/again: the small form is a dependency declared before
  the job's lookup, so it is read first, under the same deadline.
- POST …/cancel, POST /jobs/{id}/delete, DELETE /api/v1/jobs/{id}: take no body and never wait for one.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

import migrations
from app.web.main import create_app
from tests.app.api_helpers import make_settings, post_job, serve

DEADLINE_S = 5.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FastAPI, int]]:
    settings = make_settings(
        tmp_path,
        upload_timeout_s=DEADLINE_S,
        database_pool_size=3,
        database_max_overflow=0,
        free_animations_per_day=100,
    )
    migrations.upgrade(settings.resolved_database_url)
    app = create_app(settings)
    with serve(app) as port:
        yield app, port


def api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(path, route) of every API route, through included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):  # FastAPI's wrapper of an included router
            yield from api_routes(route.original_router.routes, prefix + route.include_context.prefix)


def body_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route that could take a body, the ones that end a job last."""
    found = [
        (method, path)
        for path, route in api_routes(app.routes)
        for method in sorted(route.methods & {"POST", "PUT", "PATCH", "DELETE"})
    ]
    return sorted(found, key=lambda r: ("cancel" in r[1] or "delete" in r[1] or r[0] == "DELETE", r))


def test_no_route_holds_a_connection_while_the_body_trickles(
    served: tuple[FastAPI, int], small_portrait_jpeg: bytes
) -> None:
    app, port = served
    client = TestClient(app, base_url="http://testserver")
    routes = body_routes(app)
    assert {
        ("POST", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs/{job_id}/again"),
        ("POST", "/jobs/{job_id}/again"),
    } <= set(routes)
    cookie = None
    hanging: list[tuple[str, socket.socket]] = []
    for method, path in routes:
        created = post_job(client, small_portrait_jpeg)
        assert created.status_code == 202, (method, path, created.status_code, created.text[:300])
        job_id = created.json()["id"]
        cookie = cookie or client.cookies.get("vivify_visitor")
        target = path.replace("{job_id}", job_id)
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: vivify_visitor={cookie}\r\n"
            "Origin: http://127.0.0.1\r\nSec-Fetch-Site: same-origin\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000\r\n\r\n"
            '--b\r\nContent-Disposition: form-data; name="motion"\r\n\r\nnod\r\n'.encode()
        )  # ... and the other 4,950 bytes never come
        hanging.append((f"{method} {path}", sock))
        # A route at work holds a connection for a moment; one that waits on the body would hold it
        # until the deadline.
        time.sleep(0.5)  # the request's dependencies run (some in worker threads) and reach the body
        settle = time.monotonic() + 1.5
        while (held := app.state.engine.pool.checkedout()) and time.monotonic() < settle:
            time.sleep(0.05)
        assert held == 0, f"{method} {path} holds {held} pooled connection(s) while it waits for its body"
    # Meanwhile another visitor is served, and every hanging request ends within its deadline.
    t0 = time.monotonic()
    assert TestClient(app).get("/api/v1/jobs").status_code == 200
    for name, sock in hanging:
        sock.settimeout(DEADLINE_S + 5)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pytest.fail(f"{name}: no answer within {DEADLINE_S + 5} s")
        finally:
            sock.close()
        status = answer.split(b" ", 2)[1:2]
        assert status and int(status[0]) < 500, (name, answer[:200])
        if name.endswith("again") or name.endswith("jobs") or name.endswith("photo-check"):
            assert status == [b"408"], (name, answer[:200])
    assert time.monotonic() - t0 < DEADLINE_S + 5
