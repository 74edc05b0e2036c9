"""Outgoing webhooks against a hostile integrator: malformed URLs are a 422 at submit, addresses that
wrap private IPv4 are refused, deliveries connect to the address that was checked (no DNS rebinding),
a receiver can neither bloat nor stall an attempt, and no log line carries the URL's secrets.

Receivers are real TCP servers on loopback, in threads; only DNS is stood in for (webhooks.resolve)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from celery.exceptions import Retry
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core import webhooks
from app.core.config import Settings
from app.core.queue import enqueue_webhook
from app.core.tables import Job
from app.core.webhooks import (
    MAX_RESPONSE_BYTES,
    DeadlineExceeded,
    WebhookRefused,
    check_url,
    deliver,
    is_retryable,
    redact_url,
)
from tests.app.api_helpers import broker_messages, post_job
from worker import webhooks as worker_webhooks
from worker.webhooks import JobEvents, send_webhook

SECRET = b"s3cret"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"


# --- a raw TCP receiver -------------------------------------------------------------------------


@dataclass
class Server:
    port: int
    requests: list[dict[str, str]] = field(default_factory=list)  # the headers of each request
    sent: list[int] = field(default_factory=list)  # bytes each handler managed to send
    done: threading.Event = field(default_factory=threading.Event)


Handler = Callable[[socket.socket, Server], None]


def read_request(conn: socket.socket) -> dict[str, str]:
    """Reads one request (headers and a Content-Length body); returns its lower-cased headers."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[1:]
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return headers


@contextmanager
def serve(handler: Handler, host: str = "127.0.0.1", port: int = 0) -> Iterator[Server]:
    """A TCP server on host:port; `handler` runs on each connection in its own thread."""
    listener = socket.create_server((host, port))
    listener.settimeout(0.05)
    server = Server(port=listener.getsockname()[1])
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                handler(conn, server)
            except OSError:
                pass  # the client hung up: what the bloat and trickle tests want
            finally:
                server.done.set()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(10)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def answer(status_line: bytes = NO_CONTENT) -> Handler:
    def handler(conn: socket.socket, server: Server) -> None:
        server.requests.append(read_request(conn))
        conn.sendall(status_line)

    return handler


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """Stands in for DNS: answers[i] is the answer to the i-th lookup (the last one repeats)."""
    calls: list[str] = []

    def install(*answers: list[str]) -> list[str]:
        def fake(host: str, port: int) -> list[str]:
            calls.append(host)
            return answers[min(len(calls), len(answers)) - 1]

        monkeypatch.setattr(webhooks, "resolve", fake)
        return calls

    return install


# --- 1. malformed URLs are the usual 422 at submit ----------------------------------------------

MALFORMED = [
    "http://8.8.8.8:99999/",
    "http://x:abc/",
    "http://[::1/",
    f"http://{'a' * 64}.example.com/",
    "http://a..b/",
    "http://93.184.216.34/h\r\nX-Injected: yes",
    "http://exa\r\nmple.com/",
    "http://93.184.216.34/a\tb",
    "http://93.184.216.34/a b",
    "http://93.184.216.34/\x00",
    "http://93.184.216.34/\x7f",
    "http://93.184.216.34/\u200bx",  # zero-width space: a format character
    "http://93.184.216.34:0/",
    "http://[fe80::1%25eth0]/",
]
WRAPPED_PRIVATE = [
    "http://[::ffff:127.0.0.1]/h",  # IPv4-mapped
    "http://[::ffff:10.0.0.1]/h",
    "http://[64:ff9b::a00:1]/h",  # NAT64 well-known prefix, 10.0.0.1
    "http://[64:ff9b::7f00:1]/h",
    "http://[64:ff9b:1:a00:0:100::]/h",  # NAT64 local-use prefix (RFC 8215), 10.0.0.1
    "http://[2002:a00:1::1]/h",  # 6to4, 10.0.0.1
    "http://[2002:7f00:1::]/h",
    "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/h",  # Teredo, client 10.0.0.1
]


def test_a_malformed_or_private_webhook_url_is_a_422_not_a_500(
    client: TestClient, small_portrait_jpeg: bytes
) -> None:
    for url in MALFORMED + WRAPPED_PRIVATE:  # one app for all: a fresh one per URL is slow
        r = post_job(client, small_portrait_jpeg, webhook=url)
        assert r.status_code == 422, (url, r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid_webhook", url
        assert error["message"].startswith("The webhook was refused"), url
    assert client.get("/api/v1/quota").json()["used"] == 0


@pytest.mark.parametrize("url", MALFORMED)
def test_check_url_refuses_malformed_urls_with_webhook_refused_only(url: str) -> None:
    for allow_private in (False, True):  # the shape is checked whatever the setting
        with pytest.raises(WebhookRefused) as refused:
            check_url(url, allow_private=allow_private)
        assert "\r" not in str(refused.value) and "93.184.216.34" not in str(refused.value)


def test_addresses_that_wrap_ipv4_are_judged_by_the_ipv4_they_wrap() -> None:
    for url in WRAPPED_PRIVATE + [
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://224.0.0.1/",  # multicast
        "http://0.0.0.0/",
        "http://[::]/",
    ]:
        with pytest.raises(WebhookRefused):
            check_url(url)
    for url in (
        "http://[::ffff:8.8.8.8]/h",
        "http://[64:ff9b::808:808]/h",
        "http://[64:ff9b:1:808:8:800::]/h",
        "http://[2002:808:808::1]/h",
        "http://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/h",  # Teredo, client 8.8.8.8
        "http://8.8.8.8/h",
    ):
        assert check_url(url) == url


def test_a_name_is_refused_when_any_of_its_addresses_is_private(dns: Callable[..., list[str]]) -> None:
    dns(["93.184.216.34", "64:ff9b::a00:1"])
    with pytest.raises(WebhookRefused, match="private"):
        check_url("https://hooks.example/h")
    dns(["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
    assert check_url("https://hooks.example/h")


# --- 2. the delivery connects to the address it checked -----------------------------------------


def test_a_delivery_connects_to_the_checked_address_not_a_rebound_one(
    dns: Callable[..., list[str]],
) -> None:
    """Two real receivers on one port: DNS answers 127.0.0.1 first, then 127.0.0.2. The event goes to
    the first with the name in its Host header; the name is resolved once per attempt."""
    with serve(answer()) as first, serve(answer(), host="127.0.0.2", port=first.port) as rebound:
        calls = dns(["127.0.0.1"], ["127.0.0.2"])
        url = f"http://hooks.example:{first.port}/h?k=1"
        assert deliver(url, "start", {}, SECRET, allow_private=True, timeout_s=3) == 204
        assert calls == ["hooks.example"]
        assert [r["host"] for r in first.requests] == [f"hooks.example:{first.port}"]
        assert rebound.requests == []


def test_rebinding_to_loopback_never_reaches_loopback(
    dns: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked public, rebound to 127.0.0.1 where a receiver listens: the connection goes to the
    checked address (recorded here: the sandbox cannot reach it), never to the receiver; the next
    attempt sees the new answer and is refused before connecting."""
    connects: list[str] = []
    original = httpcore.AsyncConnectionPool.__init__

    class RecordingBackend(httpcore.AsyncNetworkBackend):
        async def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.AsyncNetworkStream:
            connects.append(host)
            raise httpcore.ConnectError("the test's network reaches no public address")

    def pool_init(self: httpcore.AsyncConnectionPool, *args: object, **kwargs: object) -> None:
        kwargs["network_backend"] = RecordingBackend()
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpcore.AsyncConnectionPool, "__init__", pool_init)
    with serve(answer()) as local:
        calls = dns(["93.184.216.34"], ["127.0.0.1"])
        url = f"http://rebind.example:{local.port}/h"
        with pytest.raises(httpx.ConnectError) as unreachable:
            deliver(url, "start", {}, SECRET, timeout_s=2)
        assert is_retryable(unreachable.value)
        assert connects == ["93.184.216.34"] and calls == ["rebind.example"]
        with pytest.raises(WebhookRefused):
            deliver(url, "start", {}, SECRET, timeout_s=2)
        assert connects == ["93.184.216.34"] and local.requests == []


def test_https_to_the_pinned_address_keeps_sni_and_certificate_checks_on_the_name(
    dns: Callable[..., list[str]], tmp_path: Path
) -> None:
    """A real TLS receiver whose certificate names only hooks.example: the delivery connects to
    127.0.0.1 yet sends SNI hooks.example and verifies the certificate against that name."""
    cert_pem, key_pem = _self_signed("hooks.example")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: sni.append(name)
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))

    def tls_answer(conn: socket.socket, server: Server) -> None:
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            server.requests.append(read_request(tls))
            tls.sendall(NO_CONTENT)

    with serve(tls_answer) as rx:
        dns(["127.0.0.1"])
        url = f"https://hooks.example:{rx.port}/h"
        assert deliver(url, "completed", {}, SECRET, allow_private=True, ssl_context=client_ctx) == 204
        assert sni == ["hooks.example"] and rx.requests[0]["host"] == f"hooks.example:{rx.port}"
        # The certificate does not name 127.0.0.1: verification is real, and it used the name above.
        with pytest.raises(httpx.ConnectError):
            deliver(f"https://127.0.0.1:{rx.port}/h", "completed", {}, SECRET, allow_private=True,
                    ssl_context=client_ctx, timeout_s=2)  # fmt: skip


def _self_signed(name: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# --- 4. a receiver can neither bloat nor stall an attempt -----------------------------------------


@pytest.mark.parametrize("status", [200, 503])
def test_a_huge_answer_is_not_read_whole(status: int) -> None:
    """The receiver announces 400 MB and streams zeros until the client hangs up; the attempt reads
    at most MAX_RESPONSE_BYTES and returns (or raises the status) at once."""

    def bloat(conn: socket.socket, server: Server) -> None:
        read_request(conn)
        sent = 0
        try:
            conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: 400000000\r\n\r\n".encode())
            chunk = b"\0" * 65536
            while sent < 400_000_000:
                conn.sendall(chunk)
                sent += len(chunk)
        finally:
            server.sent.append(sent)

    with serve(bloat) as rx:
        started = time.monotonic()
        if status == 200:
            assert deliver(f"http://127.0.0.1:{rx.port}/h", "start", {}, SECRET, allow_private=True) == 200
        else:
            with pytest.raises(httpx.HTTPStatusError) as answered:
                deliver(f"http://127.0.0.1:{rx.port}/h", "start", {}, SECRET, allow_private=True)
            assert is_retryable(answered.value)
        assert time.monotonic() - started < 3
        assert rx.done.wait(5)
    # What was sent before the hang-up: our cap plus what the kernel's socket buffers took.
    assert MAX_RESPONSE_BYTES <= rx.sent[0] < 40_000_000


def _trickle(prefix: bytes, trickled: bytes, every_s: float = 0.5) -> Handler:
    def handler(conn: socket.socket, server: Server) -> None:
        read_request(conn)
        conn.sendall(prefix)
        for byte in trickled:
            conn.sendall(bytes([byte]))
            time.sleep(every_s)

    return handler


@pytest.mark.parametrize(
    "handler",
    [
        _trickle(b"", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),  # slow headers
        _trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"x" * 100),  # slow body
    ],
    ids=["headers", "body"],
)
def test_a_trickling_receiver_is_cut_off_at_the_deadline(handler: Handler) -> None:
    """Each byte arrives well within httpx's per-read timeout; only the whole-attempt deadline ends it."""
    deadline = 1.0
    with serve(handler) as rx:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as late:
            deliver(f"http://127.0.0.1:{rx.port}/h", "start", {}, SECRET, allow_private=True,
                    timeout_s=deadline)  # fmt: skip
        elapsed = time.monotonic() - started
    assert deadline <= elapsed < deadline + 0.75
    assert is_retryable(late.value) and isinstance(late.value, httpx.TransportError)


def test_a_slow_dns_answer_counts_against_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(host: str, port: int) -> list[str]:
        time.sleep(3)
        return ["127.0.0.1"]

    monkeypatch.setattr(webhooks, "resolve", slow)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        deliver("http://slow.example/h", "start", {}, SECRET, allow_private=True, timeout_s=0.5)
    assert time.monotonic() - started < 1.5


# --- 5. no URL secrets in logs ------------------------------------------------------------------


@pytest.fixture
def worker_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings(_env_file=None, webhooks_allow_private=True, webhook_attempts=3, webhook_timeout_s=1.0)
    monkeypatch.setattr(worker_webhooks, "get_settings", lambda: s)
    return s


def test_delivery_logs_and_celery_retries_never_print_the_url_secrets(
    worker_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    statuses = [
        b"HTTP/1.1 503 X\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 404 X\r\nContent-Length: 0\r\n\r\n",
    ]
    trickle = _trickle(b"", b"HTTP/1.1 200 OK\r\n\r\n", every_s=0.4)
    with serve(answer(statuses[0])) as busy, serve(answer(statuses[1])) as gone, serve(trickle) as slow:

        def url(port: int) -> str:
            return f"http://alice:pa55w0rd@127.0.0.1:{port}/hooks/tok3n?token=tok3n"

        retries = []
        for port in (busy.port, slow.port):
            with pytest.raises(Retry) as retry:
                send_webhook.apply(args=[url(port), "start", {"id": "j"}, "m"], throw=True)
            retries.append(retry.value)
        assert str(retries[0].exc) == "HTTP 503" and str(retries[1].exc) == "DeadlineExceeded"
        # What a real worker's "Task vivify.webhook[id] retry: %(exc)s" line prints (celery/app/trace.py).
        assert str(retries[0]) == "Retry in 1s: AttemptFailed('HTTP 503')"
        assert send_webhook.apply(args=[url(gone.port), "start", {"id": "j"}, "m"]).get() == "rejected"
        last = send_webhook.s(url(busy.port), "completed", {"id": "j"}, "m2").set(retries=2)
        assert last.apply().get() == "gave_up"
        strict = Settings(_env_file=None)
        monkeypatch.setattr(worker_webhooks, "get_settings", lambda: strict)
        assert send_webhook.apply(args=[url(busy.port), "start", {"id": "j"}, "m"]).get() == "refused"
        tab = "http://127.0.0.1:1/a\tb?token=tok3n"  # stored before submit refused it
        assert send_webhook.apply(args=[tab, "start", {"id": "j"}, "m"]).get() == "refused"

    printed = [r.getMessage() for r in caplog.records] + [str(r) + repr(r) for r in retries]
    assert not [line for line in printed if "pa55w0rd" in line or "tok3n" in line or "alice" in line]
    assert any(f"http://127.0.0.1:{busy.port} rejected" in line or f"http://127.0.0.1:{gone.port} rejected"
               in line for line in printed)  # fmt: skip
    assert any("gave up after 3 attempts (HTTP 503)" in line for line in printed)


def test_redacted_urls_keep_scheme_host_and_port_only() -> None:
    assert redact_url("https://u:p@Hooks.Example:8443/a/tok?x=1#f") == "https://hooks.example:8443"
    assert redact_url("http://[2001:db8::1]/x?token=1") == "http://[2001:db8::1]"
    assert redact_url("http://x:abc/") == "<malformed url>"
    assert redact_url("http://a\r\nb/") == "http://ab"  # urlsplit drops CR/LF: nothing forged in logs


def test_the_enqueued_event_shows_celery_a_redacted_url(
    client: TestClient, app: FastAPI, settings: Settings, small_portrait_jpeg: bytes
) -> None:
    """Celery's worker prints a task's `argsrepr` ("Task ... received", failures): the event's message
    carries the full URL in its args, for delivery, and only scheme://host in its argsrepr."""
    hook = "https://alice:pa55w0rd@93.184.216.34/hooks?token=tok3n"
    job_id = post_job(client, small_portrait_jpeg, webhook=hook).json()["id"]
    with app.state.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        JobEvents(session, job, settings, celery=app.state.producer).start(session)
    enqueue_webhook(hook, "completed", {"id": job_id}, "msg_x", celery=app.state.producer)  # cancel path
    messages = [
        json.loads(p.read_text())
        for p in broker_messages(settings)
        if json.loads(p.read_text())["headers"]["task"] == "vivify.webhook"
    ]
    assert len(messages) == 2
    for message in messages:
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        assert args[0] == hook
        shown = message["headers"]["argsrepr"] + message["headers"]["kwargsrepr"]
        assert "https://93.184.216.34" in shown and job_id in shown
        assert "pa55w0rd" not in shown and "tok3n" not in shown and "alice" not in shown


def test_ipaddress_sanity_of_the_fixtures() -> None:
    """The literals above wrap what their comments say (guards against a typo turning a test vacuous)."""
    wrapped = {
        url: webhooks.embedded_ipv4(ipaddress.ip_address(url[8:].split("]")[0])) for url in WRAPPED_PRIVATE
    }
    assert all(v is not None and not v.is_global for v in wrapped.values()), wrapped
