"""Redis restarted under the busy webhook-delivery worker (threads pool), on the production path.

Regression test for celery 5.7.0 (pyproject pins `!=5.7.0`): when the broker connection drops while a
threads-pool worker holds unacked deliveries and has a BRPOP pending, its
Consumer.on_connection_error_after_connected closes the connection after collect() and kombu's redis
transport dies in _connparams with AttributeError("'NoneType' object has no attribute 'hostname'"):
"Unrecoverable error", and the worker exits. Here the real events worker (`vivify worker -Q webhooks
--pool threads`, the command line of app.cli.supervisor.events_worker_command) delivers to a slow
receiver on loopback while Redis is SIGKILLed and restarted three times; it must never exit, must
reconnect each time and must deliver every webhook enqueued after the last restart.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from e2e_stack import Service, last_error_line, wait_for

from app.cli.supervisor import events_worker_command
from app.core.config import Settings
from app.core.queue import enqueue_webhook, make_producer

pytestmark = pytest.mark.e2e

THREADS = 4  # the events worker's default (events_worker_command, Stack.events_worker)
ANSWER_AFTER_S = 1.0  # the receiver's delay: each delivery holds an unacked message this long
ENQUEUE_EVERY_S = 0.4  # ~2.5 deliveries in flight: some unacked, a thread free, so a BRPOP is pending
RESTARTS = 3
DOWN_S = 1.0  # Redis is gone this long each time
AFTER = 10  # webhooks enqueued after the last restart, all to be delivered ...
DELIVER_WITHIN_S = 30.0  # ... within this


class SlowReceiver:
    """A threaded HTTP server on loopback that answers every POST with 204 after `delay_s`, and
    records the webhook-id of each answered one and how many are being held at any moment."""

    def __init__(self, delay_s: float) -> None:
        self.lock = threading.Lock()
        self.answered: list[str] = []
        self.holding = 0  # requests received, not answered yet
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    receiver.holding += 1
                try:
                    time.sleep(delay_s)
                    with receiver.lock:
                        receiver.answered.append(self.headers["webhook-id"])
                    self.send_response(204)
                    self.end_headers()
                finally:
                    with receiver.lock:
                        receiver.holding -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def in_flight(self) -> int:
        with self.lock:
            return self.holding

    def delivered(self) -> set[str]:
        with self.lock:
            return set(self.answered)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[SlowReceiver]:
    r = SlowReceiver(ANSWER_AFTER_S)
    yield r
    r.close()


def enqueue(celery: Any, url: str, msg_id: str, deadline_s: float = 10.0) -> None:
    """enqueue_webhook, retried while the broker is still coming back."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            enqueue_webhook(url, "progress", {"id": msg_id}, msg_id, celery=celery)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def alive_or_fail(worker: Service, when: str) -> None:
    if not worker.alive():
        pytest.fail(
            f"the events worker exited {when} (returncode {worker.proc and worker.proc.returncode}): "
            f"{last_error_line(worker.log_since_start())}"
        )


def test_the_webhook_worker_survives_redis_restarts_with_deliveries_in_flight(
    stack_factory, receiver: SlowReceiver
) -> None:
    stack = stack_factory(webhooks_allow_private="true")  # the receiver is on loopback
    settings = Settings(_env_file=None, broker_url=stack.settings["broker_url"])
    # Stack.events_worker runs what production runs for deliveries: the webhooks queue, threads pool.
    production = events_worker_command(settings)
    assert "--pool=threads" in production and production[production.index("-Q") + 1] == "webhooks"
    worker = stack.events_worker(threads=THREADS)
    celery = make_producer(settings)

    enqueue(celery, receiver.url, "msg_warmup")
    wait_for(lambda: "msg_warmup" in receiver.delivered(), 20, "the first webhook")

    # A steady trickle of deliveries, through every restart (enqueues fail while Redis is down).
    stop = threading.Event()

    def trickle() -> None:
        i = 0
        while not stop.is_set():
            with contextlib.suppress(Exception):  # Redis is down: this one is lost, the next goes
                enqueue_webhook(receiver.url, "progress", {"id": i}, f"msg_trickle_{i}", celery=celery)
            i += 1
            stop.wait(ENQUEUE_EVERY_S)

    feeder = threading.Thread(target=trickle, name="trickle", daemon=True)
    feeder.start()
    held_at_kill: list[int] = []
    try:
        for n in range(1, RESTARTS + 1):
            connected = worker.log_since_start().count("Connected to redis")
            # Kill while some deliveries are held (unacked) and a thread is free (BRPOP pending).
            wait_for(lambda: 1 <= receiver.in_flight() < THREADS, 15, "deliveries in flight", 0.02)
            held_at_kill.append(receiver.in_flight())
            stack.redis.stop(signal.SIGKILL)
            time.sleep(DOWN_S)
            stack.redis.start()
            alive_or_fail(worker, f"at Redis restart {n}")
            deadline = time.monotonic() + 15
            while worker.log_since_start().count("Connected to redis") <= connected:
                alive_or_fail(worker, f"after Redis restart {n}")
                assert time.monotonic() < deadline, f"no reconnection after Redis restart {n}"
                time.sleep(0.1)
            time.sleep(1.0)  # back at work: deliveries in flight again before the next kill
            alive_or_fail(worker, f"after Redis restart {n}")
    finally:
        stop.set()
        feeder.join(10)

    after = [f"msg_after_{i}" for i in range(AFTER)]
    for msg_id in after:
        enqueue(celery, receiver.url, msg_id)
    deadline = time.monotonic() + DELIVER_WITHIN_S
    while missing := set(after) - receiver.delivered():
        alive_or_fail(worker, "while delivering the webhooks enqueued after the restarts")
        assert time.monotonic() < deadline, f"{len(missing)} of {AFTER} webhooks not delivered: {missing}"
        time.sleep(0.1)

    alive_or_fail(worker, "at the end")
    log = worker.log_since_start()
    assert "Unrecoverable error" not in log
    assert log.count("Connection to broker lost") >= 1, "the worker never saw the broker go"
    assert max(held_at_kill) >= 1, held_at_kill
