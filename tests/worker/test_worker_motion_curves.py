"""A job with recorded motion curves, on the worker path with the real CPU portrait animator: the clip
has one frame per sample, and the head's yaw re-detected on its frames follows the recorded yaw; in a
clip longer than the recording, then eases back to where it started and holds there."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

from app.core.storage import LocalStore, photo_key, video_key
from models.face import FaceAnalyzer
from models.motion_curves import RecordedMotion
from models.video import read_frames
from worker import model_cache
from worker.tasks import animate_job

N = 72  # 3 s at 24 fps: the shortest recording, so the test stays quick


@pytest.fixture(autouse=True)
def fresh_cache():
    model_cache.reset()
    yield
    model_cache.reset()


def _store_portrait(store: LocalStore, job_id: str, side: int = 256) -> None:
    img = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    store.put(photo_key(job_id), buf.getvalue(), "image/jpeg")


def _recorded_yaw() -> list[float]:
    """Toward the picture's left, then across to the right, back near the start: a full swing."""
    t = np.arange(N) / N
    return [round(float(v), 3) for v in 13.0 * np.sin(2 * np.pi * t) * np.sin(np.pi * t) ** 0.5]


def test_the_clip_follows_the_recorded_yaw(settings, store, sessions, make_job, load_job) -> None:
    settings = settings.model_copy(update={"animator": "portrait"})
    yaw = _recorded_yaw()
    curves = {"fps": 24, "channels": {"yaw": yaw}}
    # A 4 s clip of a 3 s recording: the recording plays once, then a second back to its first sample.
    job_id = make_job(animator="portrait", motion="recorded", motion_curves=curves, duration_s=4.0)
    _store_portrait(store, job_id)
    assert animate_job(job_id, worker="w1", settings=settings, store=store, sessions=sessions) == "succeeded"
    assert load_job(job_id).video_info["frames"] == 96  # one frame per sample, then the ease back

    frames = read_frames(store.get(video_key(job_id)))
    assert len(frames) == 96
    analyzer = FaceAnalyzer(max_faces=1)
    analyzer.setup()
    head = np.array([analyzer.analyze(f, mask=False).faces[0].pose()[0] for f in frames])
    expected = RecordedMotion.from_json(curves).sample(96, 24)["yaw"]  # what the worker renders
    assert np.array_equal(expected[:N], np.float32(yaw))  # the recording itself, sample for sample
    # A 2-D warp shows a smaller turn than asked for, but frame by frame it follows the recording.
    change = head - head[0]
    r = float(np.corrcoef(change, expected)[0, 1])
    assert r >= 0.9, (r, change.round(1).tolist(), expected.round(1).tolist())
    assert np.sign(change[np.argmax(expected)]) == 1 and np.sign(change[np.argmin(expected)]) == -1
    swing = change.max() - change.min()
    assert np.abs(change[N + 12 :]).max() < 0.15 * swing  # back where it started: the clip loops


def test_curves_that_no_longer_pass_the_checks_fail_the_job_clearly(
    settings, store, sessions, make_job, load_job
) -> None:
    settings = settings.model_copy(update={"animator": "portrait"})
    job_id = make_job(animator="portrait", motion="recorded", motion_curves={"channels": {"nod": [0.0] * N}})
    _store_portrait(store, job_id, side=128)
    assert animate_job(job_id, worker="w1", settings=settings, store=store, sessions=sessions) == "failed"
    job = load_job(job_id)
    assert job.error_code == "bad_motion"
    assert "recorded motion" in job.error_message and "'nod'" in job.error_message
