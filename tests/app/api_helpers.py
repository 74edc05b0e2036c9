"""Helpers for the API tests (imported by the tests and by conftest.py)."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from app.core import jobs
from app.core.config import Settings
from app.core.storage import poster_key, video_key
from models.video import encode_mp4, poster_jpeg

METRICS_TOKEN = "test-metrics-token"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}  # the headers of a Prometheus scrape


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "animator": "push-in",
        "rate_limit": "1000/minute",
        "metrics_token": METRICS_TOKEN,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def jpeg(img: Image.Image, **save: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **save)
    return buf.getvalue()


def png(img: Image.Image, **save: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **save)
    return buf.getvalue()


def post_job(
    client: TestClient,
    photo: bytes | None,
    *,
    filename: str = "me.jpg",
    content_type: str = "image/jpeg",
    path: str = "/api/v1/jobs",
    **fields: str,
) -> httpx.Response:
    data = {"consent": "true", **fields}
    files = {"photo": (filename, photo, content_type)} if photo is not None else None
    return client.post(path, data=data, files=files)


def broker_messages(settings: Settings) -> list[Path]:
    return sorted((settings.broker_folder / "queue").glob("*.msg"))


def finish_job(app: FastAPI, job_id: str, frames: int = 12, gif: bool = False) -> bytes:
    """Do what a worker does on success: store a real clip and poster (and with `gif`, the clip's GIF as
    worker.tasks.store_gif makes it), then mark the job succeeded."""
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 255, size=(frames, 64, 64, 3), dtype=np.uint8)
    mp4 = encode_mp4(clip, 12)
    store = app.state.store
    store.put(video_key(job_id), mp4, "video/mp4")
    store.put(poster_key(job_id), poster_jpeg(clip[0]), "image/jpeg")
    gif_info = None
    if gif:
        from worker.tasks import store_gif  # the worker's own step; only these tests need the worker

        gif_info = store_gif(store, job_id, mp4, 64, 64)
    with app.state.sessions() as session:
        assert jobs.claim(session, job_id, "test-worker") is not None
        assert jobs.succeed(
            session,
            job_id,
            video_key=video_key(job_id),
            poster_key=poster_key(job_id),
            video_info={
                "width": 64,
                "height": 64,
                "fps": 12.0,
                "frames": frames,
                "duration_s": frames / 12,
                "bytes": len(mp4),
                "note": None,
                "gif": gif_info,
            },
            stage_seconds={},
        )
    return mp4


@contextlib.contextmanager
def serve(app: Any) -> Iterator[int]:
    """`app` on a real uvicorn server in a thread, on a free loopback port (yielded); stopped after."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
