"""The worker processes the CLI starts: their Celery command lines, and the supervisor that keeps the
embedded ones of `vivify up` running. A worker is a `celery` child process, so the CLI never imports
worker/ or torch.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

from app.core.config import Settings
from app.core.queue import worker_queues

log = logging.getLogger("vivify")


def worker_command(
    settings: Settings,
    *,
    queues: str | None = None,
    concurrency: int = 1,
    pool: str = "solo",
    beat: bool = False,
    hostname: str | None = None,
) -> list[str]:
    """The celery command line of one worker process (one per GPU: solo pool, concurrency 1)."""
    cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker"]
    queues = queues or ",".join(worker_queues(settings))
    cmd += [f"--pool={pool}", f"--concurrency={concurrency}", "-Q", queues]
    cmd += ["--loglevel", settings.log_level.upper(), "--without-gossip", "--without-mingle"]
    cmd += ["-n", hostname or f"vivify-{os.getpid()}@{socket.gethostname()}"]
    if beat:
        cmd += ["-B", "--schedule", str((settings.data_dir / "celerybeat-schedule").resolve())]
    return cmd


def events_worker_command(settings: Settings, hostname: str | None = None, threads: int = 4) -> list[str]:
    """A light worker for webhook deliveries: threads, since a delivery mostly waits on the network."""
    queues = ",".join(worker_queues(settings, animate=False, maintenance=False, webhooks=True))
    return worker_command(settings, queues=queues, pool="threads", concurrency=threads, hostname=hostname)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn: the worker gets SIGTERM if `vivify up` itself dies, so no orphan is left (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded before the fork, not in the child
    except OSError:
        return None

    def preexec() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec


class WorkerSupervisor:
    """Runs the embedded worker as a child process, restarts it if it dies, stops it on exit."""

    def __init__(
        self, cmd: list[str], stop_timeout_s: float = 15.0, env: dict[str, str] | None = None
    ) -> None:
        self.cmd = cmd
        self.env = env
        self.stop_timeout_s = stop_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        log.info("starting worker: %s", shlex.join(self.cmd[1:]))
        # Its own process group: a Ctrl-C in the terminal reaches us, and we stop the worker in order.
        self.proc = subprocess.Popen(
            self.cmd, start_new_session=True, preexec_fn=_die_with_parent(), env=self.env
        )

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.wait(0.5):
            if self.proc is not None and self.proc.poll() is not None:
                log.warning("worker exited with %s; restarting in %.0f s", self.proc.returncode, backoff)
                if self._stopping.wait(backoff):
                    return
                self._spawn()
                backoff = min(backoff * 2, 30.0)

    def stop(self) -> None:
        self._stopping.set()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        # SIGTERM = Celery's warm shutdown; unfinished messages go back to the queue.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("worker did not stop in %.0f s; killing it", self.stop_timeout_s)
            proc.kill()
            proc.wait()
