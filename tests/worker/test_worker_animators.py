"""The worker path with the real animators: the CPU portrait animator and a tiny diffusion pipeline.

The animator comes from the per-process model cache, built from Settings, as in a worker process.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from app.core.storage import LocalStore, photo_key, video_key
from models.video import probe
from worker import model_cache
from worker.tasks import animate_job


@pytest.fixture(autouse=True)
def fresh_cache():
    model_cache.reset()
    yield
    model_cache.reset()


def _with_photo(store: LocalStore, job_id: str, portrait: Image.Image, side: int) -> None:
    img = portrait.copy()
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    store.put(photo_key(job_id), buf.getvalue(), "image/jpeg")


def test_the_portrait_animator_runs_on_the_worker_path(
    settings, store, sessions, make_job, load_job, portrait
):
    settings = settings.model_copy(update={"animator": "portrait"})
    job_id = make_job(animator="portrait")
    _with_photo(store, job_id, portrait, 256)
    assert animate_job(job_id, worker="w1", settings=settings, store=store, sessions=sessions) == "succeeded"
    job = load_job(job_id)
    info = probe(store.get(video_key(job_id)))
    assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0)
    assert 3.0 <= info.duration_s <= 5.0
    assert job.video_info["frames"] == info.frame_count
    assert type(model_cache.loaded()).__name__ == "PortraitAnimator"


@pytest.mark.gpu_stack
def test_a_tiny_diffusion_pipeline_runs_on_the_worker_path(
    settings, store, sessions, make_job, load_job, portrait, tmp_path: Path
):
    from tests.fixtures.tiny_pipelines import build_tiny_svd

    model_dir = build_tiny_svd(tmp_path / "tiny-svd")
    settings = settings.model_copy(update={"animator": "diffusion", "model": str(model_dir), "device": "cpu"})
    job_id = make_job(animator="diffusion", model=str(model_dir))
    _with_photo(store, job_id, portrait, 128)
    assert animate_job(job_id, worker="w1", settings=settings, store=store, sessions=sessions) == "succeeded"
    job = load_job(job_id)
    assert {"animating", "decoding", "encoding", "storing"} <= set(job.stage_seconds)
    info = probe(store.get(video_key(job_id)))
    assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0)
    assert type(model_cache.loaded()).__name__ == "DiffusionAnimator"
