"""A worker sets its animator up before it takes any job, and exits non-zero at start if it cannot.

Real `vivify worker` processes on the embedded filesystem broker, SQLite database and object store of
the test's data folder (tests/worker/conftest.py); the job is enqueued before the worker starts, as
after a restart with work waiting.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.core.config import Settings
from app.core.queue import TaskName, enqueue_job, make_producer, queue_for
from app.core.tables import Job
from tests.worker.conftest import Gated, MakeJob
from worker.celery_app import EXIT_ANIMATOR_UNAVAILABLE

ROOT = Path(__file__).resolve().parents[2]
EXIT_WITHIN_S = 30.0  # a failing worker exits in ~5 s here (imports); generous for a loaded machine
TAKEN = f"{TaskName.ANIMATE}["  # Celery logs "Task vivify.animate[<id>] received" when it takes a message

LoadJob = Callable[[str], Job | None]


class Worker:
    """`vivify worker --no-maintenance [args]` on the test's data folder, its output kept in a file."""

    def __init__(self, settings: Settings, log_path: Path, args: tuple[str, ...], **vivify: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIVIFY_", "HF_"))}
        env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", VIVIFY_DATA_DIR=str(settings.data_dir))
        env.update({f"VIVIFY_{k.upper()}": v for k, v in vivify.items()})
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--no-maintenance", *args],
                cwd=ROOT,  # plug-in animators are imported from the repository (tests.worker.conftest)
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a prefork pool's children end with it
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit within {timeout_s:.0f} s:\n{self.output()}")

    def stop(self) -> int:
        """Celery's warm shutdown (SIGTERM); whatever is left of its process group is killed."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # raised when the whole group has exited
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


StartWorker = Callable[..., Worker]


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[StartWorker]:
    workers: list[Worker] = []

    def start(*args: str, **vivify: str) -> Worker:
        workers.append(Worker(settings, tmp_path / f"worker{len(workers)}.log", args, **vivify))
        return workers[-1]

    yield start
    for w in workers:
        w.stop()


def enqueue(
    settings: Settings, make_job: MakeJob, animator: str, model: str | None = None
) -> tuple[str, str]:
    """A queued job for `animator`, sent to its queue as the web tier does; (job id, queue)."""
    job_id = make_job(animator=animator, model=model)
    queue = queue_for(animator, model)
    enqueue_job(job_id, queue=queue, celery=make_producer(settings))
    return job_id, queue


def waiting(settings: Settings, queue: str) -> list[str]:
    """The messages of `queue` still in the embedded broker's folder (a consumer takes them out)."""
    return sorted(p.name for p in (settings.broker_folder / "queue").glob(f"*.{queue}.msg"))


def exits_before_taking_the_job(
    worker: Worker, settings: Settings, job: tuple[str, str], load_job: LoadJob
) -> dict:
    """Checks the worker exits unavailable with the job untouched; returns its one critical log entry."""
    job_id, queue = job
    before = waiting(settings, queue)
    assert len(before) == 1
    rc = worker.wait(EXIT_WITHIN_S)
    out = worker.output()
    assert rc == EXIT_ANIMATOR_UNAVAILABLE, out
    critical = [line for line in out.splitlines() if '"level": "critical"' in line]
    assert len(critical) == 1, out
    assert waiting(settings, queue) == before, out  # the job's message is still there, for a good worker
    row = load_job(job_id)
    assert row is not None and row.status == "queued" and row.worker is None, out
    assert TAKEN not in out, out
    return json.loads(critical[0])


@pytest.mark.gpu_stack
def test_a_diffusion_worker_with_a_missing_model_folder_exits_before_taking_a_job(
    settings: Settings, make_job: MakeJob, load_job: LoadJob, start_worker: StartWorker
) -> None:
    model = "/nonexistent/folder"
    job = enqueue(settings, make_job, "diffusion", model)
    worker = start_worker(animator="diffusion", model=model)
    entry = exits_before_taking_the_job(worker, settings, job, load_job)
    assert model in entry["msg"], entry  # "... no model folder at /nonexistent/folder ..."
    assert (entry["animator"], entry["model"]) == ("diffusion", model)


def test_a_plug_in_animator_that_is_unavailable_exits_with_its_message(
    settings: Settings, make_job: MakeJob, load_job: LoadJob, start_worker: StartWorker
) -> None:
    animator = "tests.worker.conftest:Gated"
    job = enqueue(settings, make_job, animator)
    worker = start_worker(animator=animator)
    entry = exits_before_taking_the_job(worker, settings, job, load_job)
    assert entry["msg"] == f"worker cannot start: {Gated.MESSAGE}"
    assert (entry["animator"], entry["model"]) == (animator, None)


def test_a_prefork_parent_never_sets_the_animator_up(start_worker: StartWorker) -> None:
    """CUDA does not survive fork: the parent leaves the animator to its children, so even one that
    cannot be set up does not stop a prefork worker from starting."""
    worker = start_worker("--pool", "prefork", animator="tests.worker.conftest:Gated")
    deadline = time.monotonic() + EXIT_WITHIN_S
    while not any(" ready." in line for line in worker.output().splitlines()):
        assert worker.proc.poll() is None, worker.output()
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.2)
    assert '"level": "critical"' not in worker.output()
    worker.kill()  # a prefork pool's warm (and cold) shutdown takes ~10 s here; nothing left to check


def test_a_worker_whose_animator_sets_up_starts_and_runs_the_waiting_job(
    settings: Settings, make_job: MakeJob, load_job: LoadJob, start_worker: StartWorker
) -> None:
    job_id, queue = enqueue(settings, make_job, "push-in")
    worker = start_worker(animator="push-in")
    deadline = time.monotonic() + 30
    while (row := load_job(job_id)) is not None and row.status in ("queued", "running"):
        assert worker.proc.poll() is None, worker.output()
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.2)
    out = worker.output()
    assert row is not None and row.status == "succeeded", out
    assert waiting(settings, queue) == []
    lines = out.splitlines()
    ready = next(i for i, line in enumerate(lines) if "animator push-in ready" in line)
    taken = next(i for i, line in enumerate(lines) if TAKEN in line)
    assert ready < taken, out  # set up at start, not on the first job
    assert worker.stop() == 0, worker.output()
