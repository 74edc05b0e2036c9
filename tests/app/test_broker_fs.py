"""The embedded broker never hands out half-written messages and delivers each message once."""

import threading
import time
import uuid
from pathlib import Path

from kombu import Connection, Exchange, Queue

import app.core.broker_fs  # noqa: F401  registers vivifyfs://
from app.core.config import Settings
from app.core.queue import celery_config


def _connection(folder: Path) -> Connection:
    opts = celery_config(Settings(data_dir=folder))["broker_transport_options"]
    return Connection("vivifyfs://", transport_options=opts)


def test_filesystem_url_maps_to_the_safe_transport(tmp_path: Path) -> None:
    cfg = celery_config(Settings(data_dir=tmp_path))
    assert cfg["broker_url"] == "vivifyfs://"
    assert cfg["broker_transport_options"]["control_folder"].startswith(str(tmp_path.resolve()))


def test_concurrent_producers_and_consumers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    # A fresh name: kombu keeps declared exchanges in process-wide memory, and an exchange declared by an
    # earlier test (another folder) would not be written to this folder's control table.
    name = f"animate-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), routing_key=name)
    big = "x" * 200_000  # large bodies make a torn read likely with a non-atomic write
    n = 60
    received: list[int] = []
    lock = threading.Lock()

    def produce(start: int) -> None:
        with _connection(tmp_path) as conn:
            producer = conn.Producer()
            for i in range(start, n, 2):
                producer.publish(
                    {"i": i, "pad": big},
                    exchange=queue.exchange,
                    routing_key=name,
                    declare=[queue],
                    serializer="json",
                )

    deadline = time.monotonic() + 60

    def consume() -> None:
        with _connection(tmp_path) as conn:
            simple = conn.SimpleQueue(queue)
            while time.monotonic() < deadline:
                with lock:
                    if len(received) >= n:
                        return
                try:
                    msg = simple.get(timeout=0.5)
                except simple.Empty:
                    continue
                assert msg.payload["pad"] == big
                msg.ack()
                with lock:
                    received.append(msg.payload["i"])

    threads = [threading.Thread(target=produce, args=(k,)) for k in (0, 1)]
    threads += [threading.Thread(target=consume) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(received) == list(range(n))
