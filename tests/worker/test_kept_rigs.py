"""The rig is built once per photo: the photo check keeps it in the object store by the photo's content,
the worker renders from it, and it goes with the photo (a deleted job, the retention period)."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from app.core import jobs
from app.core.kept_rigs import photo_digest, rig_key, rigs_prefix
from app.core.service.rigs import rig_json
from app.core.storage import LocalStore, S3Store, photo_key, video_key
from app.core.tables import Job, utcnow
from models.base import AnimationRequest
from models.portrait import PortraitAnimator
from models.portrait.mesh import MAX_FACES, rig_name
from tests.fixtures.s3 import create_bucket, s3_server
from worker import model_cache
from worker.maintenance import purge_expired
from worker.tasks import animate_job


def _rigs(store: LocalStore) -> set[str]:
    return {k for k in store.keys() if k.startswith("rigs/")}  # noqa: SIM118  # a store, not a dict


@pytest.fixture(autouse=True)
def fresh_cache():
    model_cache.reset()
    yield
    model_cache.reset()


@pytest.fixture(scope="module")
def four_faces(portrait: Image.Image) -> bytes:
    """Four people of four sizes on one backdrop, as the stored (normalised) JPEG: one more face than the
    animator rigs, and fewer than the five both analyzers read."""
    astronaut = Image.fromarray(skimage.data.astronaut())
    canvas = Image.new("RGB", (1000, 420), (196, 206, 218))
    canvas.paste(portrait.resize((300, 352)), (10, 40))
    canvas.paste(astronaut.resize((270, 270)), (330, 110))
    canvas.paste(portrait.resize((190, 223)), (620, 150))
    canvas.paste(astronaut.resize((160, 160)), (830, 200))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_the_photo_checks_rig_and_the_animators_own_draw_the_same_frames(
    four_faces: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The photo check reads up to five faces for its rig, and the animator rigs the three largest of its
    own reading: the kept rig is the rig the animator builds, and the frames are identical."""
    store = LocalStore(tmp_path)
    kept = rig_json(four_faces, 1080, store)
    assert kept is not None and len(kept["faces"]) == MAX_FACES == 3
    key = rig_key(photo_digest(four_faces), rig_name(1080, MAX_FACES))
    assert json.loads(store.get(key)) == kept

    photo = Image.open(io.BytesIO(four_faces)).convert("RGB")
    animator = PortraitAnimator()
    request = AnimationRequest(motion="gentle", seed=3, frames=24)
    built = np.asarray(animator.animate(photo, request, lambda *a: None).frames)
    with caplog.at_level(logging.INFO, logger="models.portrait.animator"):
        from_kept = np.asarray(animator.animate(photo, replace(request, rig=kept), lambda *a: None).frames)
    assert "rig: the photo check's, kept" in caplog.text
    assert np.array_equal(from_kept, built)
    assert not np.array_equal(built[12], built[0])  # the faces do move

    # A rig that is not this photo's at this size is never drawn: the animator builds its own.
    other = rig_json(four_faces, 720, None)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="models.portrait.animator"):
        again = np.asarray(animator.animate(photo, replace(request, rig=other), lambda *a: None).frames)
    assert "built (the kept one does not fit)" in caplog.text and np.array_equal(again, built)


def test_a_second_check_of_the_same_photo_answers_the_kept_rig(four_faces: bytes, tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    key = rig_key(photo_digest(four_faces), rig_name(1080, MAX_FACES))
    first = rig_json(four_faces, 1080, store)
    assert first is not None
    store.put(key, json.dumps({**first, "marked": True}).encode(), "application/json")
    assert rig_json(four_faces, 1080, store) == {**first, "marked": True}  # read, not built again
    assert rig_json(four_faces, 720, store) != first  # another size is another rig
    assert _rigs(store) == {key, rig_key(photo_digest(four_faces), rig_name(720, 3))}


def test_the_worker_renders_from_the_kept_rig(
    settings, store, sessions, make_job, load_job, four_faces: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A job whose photo the check rigged renders from the kept rig, and its clip is the very clip a job
    without one renders."""
    settings = settings.model_copy(update={"animator": "portrait", "clip_guard": "off"})
    clips = []
    for keep in (True, False):
        job_id = make_job(animator="portrait", motion="gentle")
        store.put(photo_key(job_id), four_faces, "image/jpeg")
        store.delete_under("rigs/")
        if keep:
            assert rig_json(four_faces, 1080, store) is not None
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="models.portrait.animator"):
            assert (
                animate_job(job_id, worker="w1", settings=settings, store=store, sessions=sessions)
                == "succeeded"
            )
        assert ("rig: the photo check's, kept" in caplog.text) is keep
        clips.append(store.get(video_key(job_id)))
    assert clips[0] == clips[1]


def test_a_deleted_job_takes_its_photos_rigs_with_it(
    settings, store, sessions, make_job, photo_jpeg: bytes
) -> None:
    job_id = make_job()
    prefix = rigs_prefix(photo_digest(photo_jpeg))
    store.put(prefix + "vivify-rig-v1-1080px-3faces.json", b"{}", "application/json")
    store.put(prefix + "vivify-rig-v1-720px-3faces.json", b"{}", "application/json")
    store.put("rigs/another-photo/vivify-rig-v1-1080px-3faces.json", b"{}", "application/json")
    with sessions() as session:
        jobs.delete_job(session, store, session.get(Job, job_id))
    assert sorted(_rigs(store)) == ["rigs/another-photo/vivify-rig-v1-1080px-3faces.json"]


def test_rigs_older_than_the_retention_period_are_purged(settings, store, sessions) -> None:
    old, new = "rigs/a/vivify-rig-v1-1080px-3faces.json", "rigs/b/vivify-rig-v1-1080px-3faces.json"
    for key in (old, new):
        store.put(key, b"{}", "application/json")
    past = time.time() - (settings.retention_hours + 1) * 3600
    os.utime(store.root / old, (past, past))
    counts = purge_expired(settings, sessions, store)
    assert counts["rigs"] == 1 and _rigs(store) == {new}
    assert not (store.root / "rigs/a").exists()  # its empty folder went too


def test_delete_under_on_a_real_s3_server() -> None:
    """The same on S3 (moto's HTTP server): by prefix, and by age."""
    from app.core.config import Settings

    with s3_server() as endpoint:
        create_bucket(endpoint, "clips")
        settings = Settings(
            _env_file=None, s3_endpoint_url=endpoint, s3_access_key_id="t", s3_secret_access_key="t"
        )
        store = S3Store(settings, bucket="clips", prefix="vivify")
        keys = [f"rigs/{p}/vivify-rig-v2-1080px-3faces.json" for p in ("a", "b", "c")] + ["jobs/j/photo.jpg"]
        for key in keys:
            store.put(key, b"{}", "application/json")
        assert store.delete_under("rigs/", older_than=utcnow() - timedelta(hours=1)) == 0  # all are new
        assert store.delete_under("rigs/b/") == 1
        assert store.delete_under("rigs/", older_than=utcnow() + timedelta(seconds=5)) == 2
        assert sorted(store.keys()) == ["jobs/j/photo.jpg"]
