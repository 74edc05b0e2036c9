"""Simulated scale-out: N real Celery worker processes, a real Redis, the real web API.

For each N (default 1, 2, 4, 8) this starts a fresh stack: redis-server on a free loopback port, a
SQLite database migrated by Alembic, the web tier under uvicorn, and N `celery worker --pool=solo`
processes on the job queue, each running bench/fixed_time_animator.py:FixedTimeAnimator (a fixed
number of seconds per job, 32 px frames), so what is measured is the queue, not the animation.

It reports, per N:
- jobs/minute for a batch submitted through POST /api/v1/jobs (first submit → last clip stored),
  against the ideal N × 60 / seconds-per-job;
- ETA accuracy: the start each job's answer predicted (now + eta_s - recent mean run time) against
  the start its worker recorded, and the finish predicted (now + eta_s) against the actual finish;
- broker + database overhead per job with idle workers: the job row's created_at (set just before
  the INSERT is committed and the id sent to Redis) → started_at (the worker's claim UPDATE), and the
  worker's own overhead (run time - the animator's fixed time: photo fetch, encode, store, UPDATEs).

    .venv/bin/python bench/scale.py                 # N = 1 2 4 8, 2 s jobs
    .venv/bin/python bench/scale.py --workers 1 2 --seconds 1 --jobs-per-worker 4

Everything runs on loopback and is stopped at the end of each N.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ANIMATOR = "bench.fixed_time_animator:FixedTimeAnimator"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo_bytes(side: int = 96) -> bytes:
    from matplotlib import cbook

    img = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def utc(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def wait_until(check: Any, timeout_s: float, what: str, every_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"timed out waiting for {what}")


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # Celery: warm shutdown; uvicorn: graceful
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Sample:
    job_id: str
    t_submit: float  # client clock, after the 202
    eta_s: float | None
    position: int | None
    run_mean_s: float | None  # what the ETA assumed for one run


class Stack:
    """One fresh web + N workers + Redis in a temp folder."""

    def __init__(self, folder: Path, workers: int, seconds: float, redis_bin: str) -> None:
        self.folder = folder
        self.workers = workers
        self.seconds = seconds
        self.redis_bin = redis_bin
        self.web_port = free_port()
        self.redis_port = free_port()
        self.db_url = f"sqlite:///{folder / 'vivify.db'}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "VIVIFY_DATA_DIR": str(folder),
            "VIVIFY_DATABASE_URL": self.db_url,
            "VIVIFY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "VIVIFY_ANIMATOR": ANIMATOR,
            "VIVIFY_ANIMATOR_OPTIONS": json.dumps({"seconds": seconds}),
            "BENCH_FIXED_TIME_S": str(seconds),
            "VIVIFY_FREE_ANIMATIONS_PER_DAY": "1000000",
            "VIVIFY_RATE_LIMIT": "1000000/minute",
            "VIVIFY_LOG_LEVEL": "WARNING",
            "VIVIFY_STALE_JOB_AFTER_S": "3600",
            # The fixed-time fake's clip is the photo, frozen, at 32 px: the guard would re-render it.
            # This bench measures the queue, so the guard only reports (every clip is still checked).
            "VIVIFY_CLIP_GUARD": "off",
        }
        import migrations
        from app.core.db import make_engine

        migrations.upgrade(self.db_url)
        self.engine = make_engine(self.db_url)

    def rows(self, ids: list[str]) -> dict[str, Any]:
        from sqlalchemy import select

        from app.core.tables import Job

        with self.engine.connect() as conn:
            result = conn.execute(
                select(
                    Job.id,
                    Job.status,
                    Job.created_at,
                    Job.started_at,
                    Job.finished_at,
                    Job.queue,
                    Job.stage_seconds,
                ).where(Job.id.in_(ids))
            )
            return {r.id: r for r in result}

    def distinct_workers(self) -> int:
        from sqlalchemy import func, select

        from app.core.tables import Job

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count(func.distinct(Job.worker)))).scalar() or 0)

    def run_mean(self, queue: str) -> float | None:
        from sqlalchemy.orm import Session

        from app.core.waits import recent_run_seconds

        with Session(self.engine) as session:
            return recent_run_seconds(session, queue)


def submit(client: httpx.Client, photo: bytes) -> dict[str, Any]:
    r = client.post("/api/v1/jobs", data={"consent": "true"}, files={"photo": ("p.jpg", photo, "image/jpeg")})
    if r.status_code != 202:
        raise RuntimeError(f"submit answered {r.status_code}: {r.text[:300]}")
    return r.json()


def wait_final(stack: Stack, ids: list[str], timeout_s: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        rows = stack.rows(ids)
        bad = [r for r in rows.values() if r.status in ("failed", "canceled")]
        if bad:
            raise RuntimeError(f"{len(bad)} jobs ended {bad[0].status}")
        return rows if len(rows) == len(ids) and all(r.status == "succeeded" for r in rows.values()) else None

    return wait_until(done, timeout_s, f"{len(ids)} jobs to finish", every_s=0.1)


def run_one(n: int, args: argparse.Namespace, photo: bytes) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"vivify-scale-{n}-"))
    t_begin = time.monotonic()
    stack = Stack(folder, n, args.seconds, args.redis_server)
    env = stack.env
    with ExitStack() as stack_ctx:
        stack_ctx.enter_context(
            process(
                [args.redis_server, "--port", str(stack.redis_port), "--bind", "127.0.0.1", "--save", ""]
                + ["--appendonly", "no", "--protected-mode", "yes"],
                env,
                folder / "redis.log",
            )
        )
        web_cmd = [sys.executable, "-m", "uvicorn", "app.web.main:create_app", "--factory"]
        web_cmd += ["--host", "127.0.0.1", "--port", str(stack.web_port), "--log-level", "warning"]
        stack_ctx.enter_context(process(web_cmd, env, folder / "web.log"))
        client = stack_ctx.enter_context(
            httpx.Client(base_url=f"http://127.0.0.1:{stack.web_port}", timeout=60)
        )

        def web_up() -> bool:
            try:
                return client.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(web_up, 60, "the web tier", every_s=0.2)
        # The queue the web tier routes this animator's jobs to, read from the job row it wrote.
        probe = submit(client, photo)
        queue = stack.rows([probe["id"]])[probe["id"]].queue
        for i in range(n):
            cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo"]
            cmd += ["--concurrency=1", "-Q", queue, "--loglevel", "WARNING", "--without-gossip"]
            cmd += ["--without-mingle", "-n", f"bench{i}@%h"]
            stack_ctx.enter_context(process(cmd, env, folder / f"worker{i}.log"))
        t_ready0 = time.monotonic()
        # Warm-up: one job per worker, so every worker has connected, loaded its animator and left a
        # heartbeat (the ETA counts active workers) and the queue has run times to average.
        # A worker that is still starting misses its share, so repeat until each has run one.
        warm = [probe["id"]] + [submit(client, photo)["id"] for _ in range(n - 1)]
        wait_final(stack, warm, 120)
        for _ in range(5):
            if stack.distinct_workers() >= n:
                break
            more = [submit(client, photo)["id"] for _ in range(n)]
            wait_final(stack, more, 120)
        workers_seen = stack.distinct_workers()
        startup_s = time.monotonic() - t_ready0

        # 1. Overhead with idle workers: one job at a time.
        idle_ms: list[float] = []
        stages: list[dict[str, float]] = []
        worker_ms: list[float] = []
        for _ in range(args.idle_jobs):
            job = submit(client, photo)
            row = wait_final(stack, [job["id"]], 60)[job["id"]]
            idle_ms.append(1000 * (utc(row.started_at) - utc(row.created_at)))
            worker_ms.append(1000 * (utc(row.finished_at) - utc(row.started_at) - args.seconds))
            stages.append(row.stage_seconds or {})

        # 2. A batch: jobs/minute and how well each answer's queue position / ETA predicted its start.
        samples: list[Sample] = []
        t0 = time.time()
        for _ in range(args.jobs_per_worker * n):
            run_mean = stack.run_mean(queue)  # what eta_s assumes for one run at this moment
            job = submit(client, photo)
            samples.append(Sample(job["id"], time.time(), job["eta_s"], job["queue_position"], run_mean))
        t_submitted = time.time()
        rows = wait_final(stack, [s.job_id for s in samples], 60 + 4 * args.seconds * args.jobs_per_worker)
        last_finish = max(utc(r.finished_at) for r in rows.values())
        start_err, finish_err = [], []
        for s in samples:
            r = rows[s.job_id]
            if s.eta_s is None or s.run_mean_s is None:
                continue
            predicted_start = s.t_submit + s.eta_s - s.run_mean_s
            start_err.append(utc(r.started_at) - predicted_start)
            finish_err.append(utc(r.finished_at) - (s.t_submit + s.eta_s))
        makespan = last_finish - t0
        jobs_done = len(samples)
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "workers": n,
        "jobs": jobs_done,
        "seconds_per_job": args.seconds,
        "submit_s": round(t_submitted - t0, 2),
        "makespan_s": round(makespan, 2),
        "jobs_per_min": round(60 * jobs_done / makespan, 1),
        "ideal_jobs_per_min": round(60 * n / args.seconds, 1),
        "idle_overhead_ms_median": round(statistics.median(idle_ms), 1),
        "idle_overhead_ms_max": round(max(idle_ms), 1),
        "worker_overhead_ms_median": round(statistics.median(worker_ms), 1),
        "start_err_s_mean": round(statistics.fmean(start_err), 2) if start_err else None,
        "start_err_s_mae": round(statistics.fmean(abs(e) for e in start_err), 2) if start_err else None,
        "finish_err_s_mae": round(statistics.fmean(abs(e) for e in finish_err), 2) if finish_err else None,
        "stage_ms_median": {
            k: round(1000 * statistics.median(st.get(k, 0.0) for st in stages), 1)
            for k in sorted({k for st in stages for k in st})
        },
        "startup_s": round(startup_s, 1),
        "workers_seen": workers_seen,
        "total_s": round(time.monotonic() - t_begin, 1),
        "queue": queue,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=2.0, help="fixed animation time per job")
    parser.add_argument("--jobs-per-worker", type=int, default=6, help="batch size = this × N")
    parser.add_argument("--idle-jobs", type=int, default=3, help="jobs run one at a time for the overhead")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    photo = photo_bytes()
    results = []
    for n in args.workers:
        result = run_one(n, args, photo)
        results.append(result)
        print(json.dumps(result), flush=True)
    print()
    print(
        "| workers | jobs | jobs/min (ideal) | idle enqueue→start ms (median, max) | worker overhead ms "
        "| ETA start error s (bias, MAE) | finish MAE s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['workers']} | {r['jobs']} | {r['jobs_per_min']} ({r['ideal_jobs_per_min']}) "
            f"| {r['idle_overhead_ms_median']}, {r['idle_overhead_ms_max']} "
            f"| {r['worker_overhead_ms_median']} "
            f"| {r['start_err_s_mean']}, {r['start_err_s_mae']} | {r['finish_err_s_mae']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
