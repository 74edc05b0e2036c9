"""`vivify up`: the whole product with embedded defaults (SQLite, local store, filesystem broker)."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import httpx
import pytest
from e2e_stack import Service, base_env, free_port, wait_final, wait_for

from models.video import probe

pytestmark = pytest.mark.e2e


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_vivify_up_serves_the_whole_product_and_stops_its_worker(tmp_path, small_portrait_jpeg):
    port = free_port()
    env = base_env(data_dir=str(tmp_path / "var"), secret_key=secrets.token_urlsafe(32))
    env.update(PORT=str(port), HOST="127.0.0.1")  # the plain HOST/PORT variables are honoured
    up = Service("up", ["up"], env, tmp_path).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, 90, "vivify up", 0.25)
        assert f"http://127.0.0.1:{port}" in up.log()
        with httpx.Client(base_url=base, timeout=30) as client:
            r = client.post(
                "/api/v1/jobs",
                files={"photo": ("me.jpg", small_portrait_jpeg, "image/jpeg")},
                data={"consent": "true"},
            )
            assert r.status_code == 202, r.text
            job = wait_final(client, r.json()["id"], timeout_s=120)
            assert job["status"] == "succeeded", job
            assert job["animator"] == "portrait"  # the CPU portrait animator is the default

            video = client.get(job["urls"]["video"])  # local store: streamed, not redirected
            assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
            part = client.get(job["urls"]["video"], headers={"Range": "bytes=0-99"})
            assert part.status_code == 206 and part.content == video.content[:100]

        info = probe(video.content)
        assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0)
        assert 3.0 <= info.duration_s <= 5.0 and info.width % 2 == 0 and info.height % 2 == 0
        clips = list((tmp_path / "var" / "objects").rglob("*.mp4"))
        assert [p.relative_to(tmp_path / "var" / "objects").as_posix() for p in clips] == [
            f"jobs/{job['id']}/clip.mp4"
        ]

        workers = children(up.pid)
        # One animate worker (solo pool) and one light worker that delivers webhooks.
        assert len(workers) == 2, "vivify up starts one animate worker and one webhooks worker"
    finally:
        rc = up.stop(signal.SIGTERM, timeout_s=40)
    assert rc == 0, up.log()[-3000:]
    assert not any(pid_alive(pid) for pid in workers), "the workers must stop with vivify up"
