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
    check = job.clip_check
    assert check["passed"] and check["rendered_by"] == "portrait" and check["fallback"] is None
    assert 0 <= check["identity_distance"] < 0.45 and check["faces"][0]["kept"] == 1.0
    assert job.stage_seconds["checking"] == pytest.approx(check["seconds"], abs=1e-3)


@pytest.mark.gpu_stack
def test_a_tiny_diffusion_pipeline_trips_the_guard_on_the_worker_path(
    settings, store, sessions, make_job, load_job, portrait, tmp_path: Path
):
    """Random weights render noise: the clip check fails it, the calmer second try too, and the portrait
    animator makes the clip. The job keeps the animator it asked for; the check names who made it."""
    from bench.tiny_pipelines import build_tiny_svd

    model_dir = build_tiny_svd(tmp_path / "tiny-svd")
    settings = settings.model_copy(update={"animator": "diffusion", "model": str(model_dir), "device": "cpu"})
    job_id = make_job(animator="diffusion", model=str(model_dir))
    _with_photo(store, job_id, portrait, 256)
    assert animate_job(job_id, worker="w1", settings=settings, store=store, sessions=sessions) == "succeeded"
    job = load_job(job_id)
    assert job.animator == "diffusion"
    check = job.clip_check
    assert check["passed"] and check["rendered_by"] == "portrait"
    assert check["fallback"]["action"] == "portrait" and "face kept" in check["fallback"]["reason"]
    assert check["identity_distance"] < 0.45
    info = probe(store.get(video_key(job_id)))
    assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0)
    assert (info.width, info.height) == (218, 256)  # the portrait animator at the photo's size (even width)
    assert type(model_cache.loaded()).__name__ == "DiffusionAnimator"


@pytest.mark.gpu_stack
def test_a_tiny_diffusion_pipeline_with_the_guard_failing_the_job(
    settings, store, sessions, make_job, load_job, portrait, tmp_path: Path
):
    """VIVIFY_CLIP_GUARD=fail: the noise ends the job as clip_check_failed, with the figures stored."""
    from bench.tiny_pipelines import build_tiny_svd

    model_dir = build_tiny_svd(tmp_path / "tiny-svd")
    settings = settings.model_copy(
        update={"animator": "diffusion", "model": str(model_dir), "device": "cpu", "clip_guard": "fail"}
    )
    job_id = make_job(animator="diffusion", model=str(model_dir))
    _with_photo(store, job_id, portrait, 256)
    assert animate_job(job_id, worker="w1", settings=settings, store=store, sessions=sessions) == "failed"
    job = load_job(job_id)
    assert job.error_code == "clip_check_failed" and "face kept" in job.error_message
    assert not job.clip_check["passed"] and job.clip_check["rendered_by"] == "diffusion"
    assert job.video_key is None and not store.exists(video_key(job_id))
