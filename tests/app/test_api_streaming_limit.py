"""A too-large upload is refused without the server reading it all (real uvicorn, raw socket)."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import migrations
from app.web.main import create_app
from tests.app.api_helpers import METRICS_TOKEN, make_settings, serve

LIMIT = 1024 * 1024  # 1 MiB upload limit for this test
CLAIMED = 200 * 1024 * 1024  # what the client says it will send
UPLOAD_TIMEOUT_S = 1.5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    yield from _serve(tmp_path, max_upload_bytes=LIMIT)


@pytest.fixture
def impatient_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A server that gives an upload body UPLOAD_TIMEOUT_S to arrive."""
    yield from _serve(tmp_path, upload_timeout_s=UPLOAD_TIMEOUT_S)


def _serve(tmp_path: Path, **overrides: Any) -> Iterator[tuple[str, int]]:
    s = make_settings(tmp_path, **overrides)
    migrations.upgrade(s.resolved_database_url)
    with serve(create_app(s)) as port:
        yield "127.0.0.1", port


HEAD = (
    b'--b\r\nContent-Disposition: form-data; name="consent"\r\n\r\ntrue\r\n'
    b'--b\r\nContent-Disposition: form-data; name="photo"; filename="big.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0"
)


def _read_answer(sock: socket.socket) -> bytes:
    """The whole answer: the head, then the body its Content-Length announces (or what came before
    the server closed the connection)."""
    sock.settimeout(10)
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            part = sock.recv(65536)
            if not part:
                return answer
            answer += part
        head = answer.partition(b"\r\n\r\n")[0]
        lines = (line.lower().partition(b":") for line in head.split(b"\r\n")[1:])
        fields = {name.strip(): value.strip() for name, _, value in lines}
        total = len(head) + 4 + int(fields.get(b"content-length", b"0"))
        while len(answer) < total:
            part = sock.recv(65536)
            if not part:
                break
            answer += part
        return answer
    except (ConnectionResetError, TimeoutError):
        return answer


def _error_code(answer: bytes) -> str:
    return json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"]


def _send_until_answered(sock: socket.socket, first: bytes, chunk: bytes, chunked: bool) -> tuple[int, bytes]:
    """Send a body until the server answers (or 200 MB went out). Returns (bytes sent, answer)."""
    sent = 0
    payload = first
    while sent < CLAIMED:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        data = (b"%x\r\n" % len(payload) + payload + b"\r\n") if chunked else payload
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(payload)
        payload = chunk
    return sent, _read_answer(sock)


def test_declared_length_over_the_limit_is_refused_before_the_body(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        sock.sendall(
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {CLAIMED}\r\n\r\n".encode()
        )
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert _error_code(answer) == "file_too_large"


def test_chunked_upload_is_cut_off_soon_after_the_limit(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        sock.sendall(
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sent, answer = _send_until_answered(sock, HEAD, b"\x00" * 65536, chunked=True)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert _error_code(answer) == "file_too_large"
    # The server stopped reading near the limit: far less than the 200 MB the client had to send.
    print(f"sent {sent} bytes before the 413")
    assert sent < 16 * LIMIT, sent


def _metric(server: tuple[str, int], route: str) -> dict[str, float]:
    """vivify_http_requests_total for POST `route`, by status."""
    with socket.create_connection(server) as sock:
        scrape = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {METRICS_TOKEN}\r\n"
        sock.sendall(scrape.encode() + b"Connection: close\r\n\r\n")
        text = _read_answer(sock).partition(b"\r\n\r\n")[2].decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("vivify_http_requests_total{") and f'route="{route}"' in line:
            status = line.split('status="')[1].split('"')[0]
            found[status] = float(line.rsplit(" ", 1)[1])
    return found


def test_a_trickled_body_gets_408_at_the_upload_deadline(impatient_server: tuple[str, int]) -> None:
    with socket.create_connection(impatient_server) as sock:
        sock.sendall(
            b"POST /api/v1/photo-check HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n" + HEAD
        )
        start = time.monotonic()
        answer = b""
        while time.monotonic() - start < 4 * UPLOAD_TIMEOUT_S:  # one byte every 0.1 s: never finishes
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                answer = _read_answer(sock)
                break
            sock.sendall(b"\x00")
        waited = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == "request_timeout" and "seconds" in body["error"]["message"]
    assert UPLOAD_TIMEOUT_S * 0.9 < waited < UPLOAD_TIMEOUT_S + 2, waited
    assert _metric(impatient_server, "/api/v1/photo-check") == {"408": 1.0}


def test_a_client_that_goes_away_mid_upload_is_no_server_error(
    server: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    with socket.create_connection(server) as sock:
        sock.sendall(
            b"POST /api/v1/photo-check HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 500000\r\n\r\n"
            + HEAD
            + b"\x00" * 20000
        )
        time.sleep(0.3)  # the server is reading the body now
    deadline = time.monotonic() + 10
    while not (seen := _metric(server, "/api/v1/photo-check")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == {"499": 1.0}, seen  # counted as the client's going, not as a 500
    assert "unhandled error" not in caplog.text
    assert "client went away during POST /api/v1/photo-check" in caplog.text
