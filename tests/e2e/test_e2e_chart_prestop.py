"""The Helm chart's pre-stop hook on a real worker mid-clip: it starts Celery's warm shutdown, the clip in
hand finishes and is stored, and the hook returns only once the worker has gone (in the pod, the
kubelet's own SIGTERM and the grace period's end come after it)."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from e2e_stack import wait_final, wait_for

from tests.deploy.chart import named, render

pytestmark = pytest.mark.e2e

FAULTY = "tests.e2e.faulty:Faulty"
SLOW = 11  # the seed Faulty animates slowly, so the job can be caught mid-run


def pre_stop_for(pid: int) -> list[str]:
    """The GPU workers' pre-stop command, aimed at `pid`: in the pod the worker is PID 1 (tini, which
    forwards the signal to Celery), here a process of the test."""
    spec = named(render(), "Deployment", "-worker-diffusion")["spec"]["template"]["spec"]
    (worker,) = [c for c in spec["containers"] if c["name"] == "worker"]
    command: list[str] = worker["lifecycle"]["preStop"]["exec"]["command"]
    return [*command[:-1], re.sub(r"(kill -(?:TERM|0) )1\b", rf"\g<1>{pid}", command[-1])]


def test_the_pre_stop_hook_lets_the_clip_in_hand_finish(stack_factory, small_portrait_jpeg, monkeypatch):
    monkeypatch.setenv("VIVIFY_TEST_FRAME_SLEEP_S", "0.1")  # about 10 s of animating
    stack = stack_factory(animator=FAULTY)
    stack.web()
    worker = stack.worker("w1")
    with stack.client() as client:
        job_id = stack.submit(client, small_portrait_jpeg, seed=SLOW)

        def mid_run() -> bool:
            row = stack.job_row(job_id)
            return row["status"] == "running" and row["progress"] > 0.15

        wait_for(mid_run, 60, "the job mid-run", 0.05)
        worker.stopping = True  # a planned stop: the stack must not restart it
        hook = subprocess.Popen(pre_stop_for(worker.pid))
        time.sleep(1.0)
        # The clip goes on, and the hook waits for it (the kubelet's SIGTERM would come after the hook).
        assert hook.poll() is None and worker.alive() and stack.job_row(job_id)["status"] == "running"
        assert worker.proc is not None
        assert worker.proc.wait(120) == 0  # warm shutdown: a clean exit, after the job
        assert hook.wait(10) == 0  # and the hook ends with the worker, not before
        job = wait_final(client, job_id, timeout_s=10)
    assert job["status"] == "succeeded", job
    assert stack.job_row(job_id)["attempts"] == 1  # finished by the stopping worker, not redelivered
