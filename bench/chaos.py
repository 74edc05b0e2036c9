"""Chaos run: N jobs with webhooks on the production shape while workers, Redis, Postgres, storage and
the web tier fail on a schedule; then an audit of what came out.

The stack (tests/e2e/e2e_stack.py): redis-server with AOF (appendfsync always), a throwaway Postgres,
moto's S3 server as its own process, `vivify web`, one light events worker (webhooks + maintenance
queues, with beat: the reconciler) and `--workers` animate workers (solo pool) running
bench/chaos_animator.py: the fixed-time animator, recording every successful animate() with its seed.

Faults (with chaos; none with --no-chaos):
- a random animate worker SIGKILLed every 15-30 s and started again (a fresh process);
- Redis SIGKILLed and started again (AOF keeps the queue), twice;
- Postgres stopped (fast shutdown: connections cut) and started again, once;
- storage taken away for 20 s: the moto process is paused with SIGSTOP, then SIGCONT. (moto keeps its
  objects in memory, so a stop/start would lose every object; paused, it accepts connections but
  answers nothing, as a hung storage service does. Requests wait, they do not fail.)
- the web tier restarted once (SIGTERM, as a deploy does; a fresh process on the same port).

Supervision, as in production: docker-compose.yml gives web, worker, webhooks and beat
`restart: unless-stopped`, so a process that exits on its own (a crash, Celery's "Unrecoverable error")
is started again. Here e2e_stack.Supervisor does the same for every Vivify process after
`restart_delay_s`, leaving the schedule's own kill-then-restart alone; the report's `restarts` counts the
unplanned restarts per process kind (web, worker, events) with each exit's last error line. A figure,
not a failure.

Submits come from `--visitors` visitors (cookies) at a steady rate, each with its own Idempotency-Key,
retried with the same key on connection errors, 5xx and 429, as a client should.

Audit: every job final; each succeeded job has its clip and poster, no object belongs to no job;
successful animate() runs per job (duplicates classified); `completed` webhooks per job, raw and by
webhook-id; allowance rows (submissions) per visitor against jobs.

    .venv/bin/python bench/chaos.py                       # 1,000 jobs under faults
    .venv/bin/python bench/chaos.py --no-chaos            # the same without faults (baseline)
    .venv/bin/python bench/chaos.py --jobs 100 --json /tmp/chaos.json
"""

from __future__ import annotations

import argparse
import io
import json
import queue
import random
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests" / "e2e"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import e2e_stack  # noqa: E402  the tests' module, by the same name the e2e tests import it
from e2e_stack import Service, Stack, wait_for  # noqa: E402

from bench.chaos_animator import read_runs  # noqa: E402

ANIMATOR = "bench.chaos_animator:ChaosAnimator"
COOKIE = "vivify_visitor"
FINAL = ("succeeded", "failed", "canceled")
# A job's objects: its photo, its clip and poster, and the clip's GIF (made where it can be: a GIF that
# cannot be made is left out and never fails the job, so it is not required, only known).
OBJECT_NAMES = ("photo.jpg", "clip.mp4", "poster.jpg", "clip.gif")
MEDIA_NAMES = {"clip.mp4", "poster.jpg", "clip.gif"}


@dataclass
class ChaosConfig:
    jobs: int = 1000
    workers: int = 4
    seconds: float = 0.5  # the fixed animator time per job
    visitors: int = 8
    submitters: int = 4  # client threads
    rate: float = 1.6  # submits per second
    chaos: bool = True
    kill_every_s: tuple[float, float] = (15.0, 30.0)
    worker_kills: int | None = None  # None: keep killing until the submits end
    redis_restarts: int = 2
    postgres_restarts: int = 1
    storage_outages: int = 1
    storage_outage_s: float = 20.0
    web_restarts: int = 1
    down_s: float = 2.0  # how long Redis / Postgres stay down
    final_deadline_s: float = 300.0  # after the last fault and submit, for every job to be final
    webhook_settle_s: float = 60.0  # then for the `completed` webhooks
    submit_deadline_s: float = 300.0  # per submit, retries included
    seed: int = 1
    # Worker settings scaled to sub-second jobs (production: minutes). soft < hard < visibility.
    stale_job_after_s: int = 15
    visibility_timeout_s: int = 30
    soft_limit_s: int = 8
    hard_limit_s: int = 15
    task_max_retries: int = 5
    # Like compose's `restart: unless-stopped`: a Vivify process that exits on its own (not a chaos kill)
    # is started again after this delay (doubled while it keeps exiting within 10 s). 0: no supervision.
    restart_delay_s: float = 1.0


def stack_settings(cfg: ChaosConfig) -> dict[str, str]:
    """The VIVIFY_* settings of the chaos stack (pass to Stack(...) or the tests' stack_factory)."""
    return dict(
        animator=ANIMATOR,
        animator_options=json.dumps({"seconds": cfg.seconds}),
        free_animations_per_day=str(cfg.jobs * 10),  # every visitor shares 127.0.0.1: per IP too
        rate_limit="100000/minute",
        webhooks_allow_private="true",  # the receiver is on loopback
        stale_job_after_s=str(cfg.stale_job_after_s),
        broker_visibility_timeout_s=str(cfg.visibility_timeout_s),
        task_soft_time_limit_s=str(cfg.soft_limit_s),
        task_time_limit_s=str(cfg.hard_limit_s),
        task_max_retries=str(cfg.task_max_retries),
        log_level="INFO",
        # The chaos animator is a fixed-time fake whose clip is the photo, frozen, at 32 px: the clip check
        # would rightly fail it and the guard re-render it, which is not what this run measures. Off, every
        # clip is still checked and its figures stored.
        clip_guard="off",
    )


def photo_bytes(side: int = 96) -> bytes:
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
        img = img.convert("RGB")
        img.thumbnail((side, side))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        return buf.getvalue()


# The webhook receiver.


@dataclass(frozen=True)
class Hook:
    t: float
    webhook_id: str
    job_id: str
    event: str


class Receiver:
    """Records every delivery (webhook-id, job id, event) and answers 204."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    doc = json.loads(body)
                    hook = Hook(time.time(), self.headers["webhook-id"], doc["data"]["id"], doc["type"])
                except (ValueError, KeyError, TypeError):
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.hooks.append(hook)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self) -> list[Hook]:
        with self.lock:
            return list(self.hooks)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# Submitting.


@dataclass
class Submit:
    index: int
    seed: int
    visitor: int
    key: str
    t_release: float  # when it was due (wall clock)
    t_first: float = 0.0  # first POST attempt
    t_accepted: float = 0.0
    job_id: str | None = None
    attempts: int = 0
    replayed: bool = False
    error: str | None = None
    retried_on: list[str] = field(default_factory=list)


def visitor_cookies(base_url: str, n: int) -> list[str]:
    cookies = []
    for _ in range(n):
        with httpx.Client(base_url=base_url, timeout=30) as client:
            client.get("/api/v1/jobs").raise_for_status()
            cookies.append(client.cookies[COOKIE])
    return cookies


def submit_one(client: httpx.Client, sub: Submit, photo: bytes, hook_url: str, deadline_s: float) -> None:
    sub.t_first = time.time()
    give_up = time.monotonic() + deadline_s
    while True:
        sub.attempts += 1
        wait = 0.5
        try:
            r = client.post(
                "/api/v1/jobs",
                files={"photo": ("portrait.jpg", photo, "image/jpeg")},
                data={
                    "consent": "true",
                    "seed": str(sub.seed),
                    "motion": "smile",
                    "webhook": hook_url,
                    "webhook_events_filter": "start,completed",
                },
                headers={"Idempotency-Key": sub.key},
            )
            if r.status_code in (200, 202):
                sub.job_id = r.json()["id"]
                sub.replayed = r.status_code == 200
                sub.t_accepted = time.time()
                return
            if r.status_code < 500 and r.status_code != 429:
                sub.error = f"{r.status_code}: {r.text[:300]}"
                return
            sub.retried_on.append(str(r.status_code))
            wait = min(2.0, max(0.2, float(r.headers.get("Retry-After", "0.5") or 0.5)))
        except httpx.TransportError as exc:
            sub.retried_on.append(type(exc).__name__)
        if time.monotonic() + wait > give_up:
            sub.error = f"gave up after {sub.attempts} attempts: {sub.retried_on[-3:]}"
            return
        time.sleep(wait)


def run_submits(
    base_url: str, cookies: list[str], subs: list[Submit], photo: bytes, hook_url: str, cfg: ChaosConfig
) -> list[threading.Thread]:
    """Start the client threads; each takes the next due submit (steady rate) and posts it."""
    todo: queue.Queue[Submit] = queue.Queue()
    for sub in subs:
        todo.put(sub)

    def loop() -> None:
        clients = {
            v: httpx.Client(base_url=base_url, timeout=60, cookies={COOKIE: c}) for v, c in enumerate(cookies)
        }
        try:
            while True:
                try:
                    sub = todo.get_nowait()
                except queue.Empty:
                    return
                delay = sub.t_release - time.time()
                if delay > 0:
                    time.sleep(delay)
                submit_one(clients[sub.visitor], sub, photo, hook_url, cfg.submit_deadline_s)
        finally:
            for client in clients.values():
                client.close()

    threads = [threading.Thread(target=loop, daemon=True, name=f"submit-{i}") for i in range(cfg.submitters)]
    for t in threads:
        t.start()
    return threads


# Faults.


@dataclass
class Fault:
    kind: str
    t: float  # wall clock at the start
    seconds: float  # how long it took (down time included)
    detail: str = ""
    pid: int | None = None  # the killed worker's pid


def plan_faults(cfg: ChaosConfig, submit_s: float, rng: random.Random) -> list[tuple[float, str]]:
    """(offset from the first submit, kind), in time order."""
    if not cfg.chaos:
        return []
    plan: list[tuple[float, str]] = []
    t, kills = 0.0, 0
    while cfg.worker_kills is None or kills < cfg.worker_kills:
        t += rng.uniform(*cfg.kill_every_s)
        if cfg.worker_kills is None and t > submit_s:
            break
        plan.append((t, "worker_kill"))
        kills += 1

    def spread(n: int, kind: str, lo: float, hi: float) -> None:
        for k in range(n):
            plan.append((submit_s * (lo + (hi - lo) * (k + 0.5) / n), kind))

    spread(cfg.storage_outages, "storage_outage", 0.1, 0.3)
    spread(cfg.redis_restarts, "redis_restart", 0.25, 0.85)
    spread(cfg.postgres_restarts, "postgres_restart", 0.45, 0.65)
    spread(cfg.web_restarts, "web_restart", 0.8, 1.0)
    return sorted(plan)


class Chaos:
    """Applies faults to the stack; every process is started from the calling (main) thread, since a
    child started from a thread that ends gets its parent-death signal."""

    def __init__(self, stack: Stack, redis: Any, postgres: Any, s3: Any, cfg: ChaosConfig) -> None:
        self.stack, self.redis, self.postgres, self.s3, self.cfg = stack, redis, postgres, s3, cfg
        self.workers: list[Service] = []
        self.restarts: Counter[str] = Counter()
        self.rng = random.Random(cfg.seed)
        self.faults: list[Fault] = []

    def start_workers(self, n: int) -> None:
        names = [f"w{i + 1}" for i in range(n)]
        started = [self._worker(name) for name in names]
        for svc in started:
            wait_for(lambda svc=svc: Stack._ready(svc), 120, svc.name, 0.2)
        self.workers.extend(started)

    def _worker(self, name: str) -> Service:
        args = ["worker", "-Q", "animate," + e2e_stack_queue(), "-n", f"{name}@e2e"]
        return self.stack.start_service(f"worker-{name}", args, "worker")

    def apply(self, kind: str) -> Fault:
        t0 = time.time()
        fault = Fault(kind, t0, 0.0)
        if kind == "worker_kill":
            # A worker that has taken jobs (is ready), if any; the replacement starts at once and is
            # not waited for, so a slow start (a loaded machine) does not delay the schedule.
            alive = [w for w in self.workers if w.alive()]
            ready = [w for w in alive if " ready." in w.log()]
            victim = self.rng.choice(ready or alive)
            fault.pid, fault.detail = victim.pid, victim.name
            victim.stop(signal.SIGKILL)  # planned: the supervisor leaves it alone, the replacement is ours
            self.workers.remove(victim)
            base = victim.name.removeprefix("worker-").split("-")[0]
            self.restarts[base] += 1
            self.workers.append(self._worker(f"{base}-{self.restarts[base]}"))
        elif kind == "redis_restart":
            self.redis.stop(signal.SIGKILL)  # no shutdown save: only the AOF keeps the queue
            time.sleep(self.cfg.down_s)
            self.redis.start()
        elif kind == "postgres_restart":
            self.postgres.pause()  # fast shutdown: every connection is cut
            time.sleep(self.cfg.down_s)
            self.postgres.resume()
        elif kind == "storage_outage":
            self.s3.pause()  # SIGSTOP
            try:
                time.sleep(self.cfg.storage_outage_s)
            finally:
                self.s3.resume()
        elif kind == "web_restart":
            self.stack.restart_web(signal.SIGTERM)
        else:
            raise ValueError(kind)
        fault.seconds = round(time.time() - t0, 2)
        self.faults.append(fault)
        print(f"[chaos] {kind} {fault.detail} ({fault.seconds:.1f} s)", flush=True)
        return fault


def e2e_stack_queue() -> str:
    from app.core.queue import queue_for

    return queue_for(ANIMATOR)


# The run.


def db_rows(database_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(sql), params).mappings()]
    finally:
        engine.dispose()


def run(
    stack: Stack,
    redis: Any,
    postgres: Any,
    s3: Any,
    cfg: ChaosConfig,
    workdir: Path,
    photo: bytes | None = None,
) -> dict[str, Any]:
    """Start web + workers on `stack`, submit, inject faults, wait, audit. Returns the report (JSON-able).
    The caller stops the stack and the servers."""
    photo = photo or photo_bytes()
    anim_dir = workdir / "animator"
    anim_dir.mkdir(parents=True, exist_ok=True)
    stack.extra_env["CHAOS_ANIMATOR_DIR"] = str(anim_dir)
    rng = random.Random(cfg.seed)
    t_setup = time.time()
    if cfg.restart_delay_s > 0:
        stack.supervise(delay_s=cfg.restart_delay_s, log=lambda line: print(line, flush=True))
    stack.web()
    chaos = Chaos(stack, redis, postgres, s3, cfg)
    # The webhooks consumer and beat (the reconciler) in one light process: kind "events".
    events = stack.start_service(
        "worker-events",
        ["worker", "-Q", "webhooks,maintenance", "--pool", "threads", "-c", "4", "-n", "events@e2e", "-B"],
        "events",
    )
    chaos.start_workers(cfg.workers)
    wait_for(lambda: Stack._ready(events), 120, "events worker", 0.2)
    receiver = Receiver()
    try:
        cookies = visitor_cookies(stack.base_url, cfg.visitors)
        setup_s = time.time() - t_setup
        submit_s = cfg.jobs / cfg.rate
        t_start = time.time() + 0.5
        seed0 = rng.randrange(1_000_000, 1_000_000_000)
        subs = [
            Submit(i, seed0 + i, i % cfg.visitors, str(uuid.uuid4()), t_start + i / cfg.rate)
            for i in range(cfg.jobs)
        ]
        threads = run_submits(stack.base_url, cookies, subs, photo, receiver.url, cfg)
        for offset, kind in plan_faults(cfg, submit_s, rng):
            delay = t_start + offset - time.time()
            if delay > 0:
                time.sleep(delay)
            chaos.apply(kind)
        for t in threads:
            t.join()
        t_submitted = time.time()
        print(f"[chaos] submits done after {t_submitted - t_start:.0f} s", flush=True)

        ids = [s.job_id for s in subs if s.job_id]
        wait_final(stack.database_url, ids, cfg.final_deadline_s)
        t_final = time.time()
        completed_wait(receiver, ids, cfg.webhook_settle_s)
        time.sleep(3)  # a duplicate run still storing or cleaning up after a final job
        report = audit(stack, s3, subs, receiver.snapshot(), read_runs(anim_dir), chaos.faults)
        report["timing"] = {
            "setup_s": round(setup_s, 1),
            "submit_window_s": round(t_submitted - t_start, 1),
            "all_final_after_submits_s": round(t_final - t_submitted, 1),
            "run_s": round(t_final - t_start, 1),
        }
        report["log_signals"] = log_signals(stack)
        report["restarts"] = restarts_report(stack, chaos)
        print(f"[chaos] unplanned restarts: {report['restarts'].get('unplanned_restarts')}", flush=True)
        return report
    finally:
        receiver.close()


def restarts_report(stack: Stack, chaos: Chaos) -> dict[str, Any]:
    """Process restarts per kind: planned (the chaos schedule's kills and web restarts, each followed by
    its own start) and unplanned (a process that exited on its own and the supervisor started again, as
    compose would). A figure, not a failure: each unplanned exit's last error line says why."""
    planned = {
        "worker": sum(chaos.restarts.values()),
        "web": sum(f.kind == "web_restart" for f in chaos.faults),
    }
    if stack.supervisor is None:
        return {"planned": planned, "supervised": False}
    return {"planned": planned, "supervised": True, **stack.supervisor.summary()}


def wait_final(database_url: str, ids: list[str], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    id_set = set(ids)
    while time.monotonic() < deadline:
        try:
            rows = db_rows(database_url, "SELECT id, status FROM jobs")
            if all(r["status"] in FINAL for r in rows if r["id"] in id_set) and len(rows) >= len(id_set):
                return True
        except Exception:
            pass
        time.sleep(1.0)
    return False


def completed_wait(receiver: Receiver, ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    want = set(ids)
    while time.monotonic() < deadline:
        got = {h.job_id for h in receiver.snapshot() if h.event == "completed"}
        if want <= got:
            return
        time.sleep(0.5)


def log_signals(stack: Stack) -> dict[str, Any]:
    """Counts of log lines that explain a lost or late event."""
    patterns = {
        "webhook_not_enqueued": r"webhook not enqueued",
        "end_of_job_webhook_skipped": r"end-of-job metrics/webhook skipped",
        "webhook_gave_up": r"webhook gave up",
        "job_committed_not_enqueued": r"committed but not enqueued",
        "reconciled": r"reconciled stale jobs",
        "task_retry": r"Retry in",
        "skipped_final": r"is final or gone: skipped",
    }
    counts: Counter[str] = Counter()
    dropped: list[str] = []
    seen: set[Path] = set()
    for svc in stack.services:
        if svc.log_path in seen or not svc.log_path.exists():
            continue
        seen.add(svc.log_path)
        text = svc.log_path.read_text(errors="replace")
        for name, pattern in patterns.items():
            counts[name] += len(re.findall(pattern, text))
        dropped += re.findall(r"job (\S+): completed webhook not enqueued", text)
    return {**counts, "completed_not_enqueued_ids": sorted(set(dropped))}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return round(values[k], 2)


def audit(
    stack: Stack,
    s3: Any,
    subs: list[Submit],
    hooks: list[Hook],
    runs: list[tuple[int, int, float, float]],
    faults: list[Fault],
) -> dict[str, Any]:
    rows = db_rows(
        stack.database_url,
        "SELECT id, visitor_id, status, seed, attempts, error_code, idempotency_key, finished_at FROM jobs",
    )
    by_id = {r["id"]: r for r in rows}
    accepted = [s for s in subs if s.job_id]
    ids = [s.job_id for s in accepted]
    assert all(i is not None for i in ids)
    problems: list[str] = []

    # 1. Every job final.
    not_final = [i for i in ids if i not in by_id or by_id[i]["status"] not in FINAL]
    missing_rows = [i for i in ids if i not in by_id]
    statuses = Counter(by_id[i]["status"] for i in ids if i in by_id)
    errors = Counter(by_id[i]["error_code"] for i in ids if i in by_id and by_id[i]["error_code"])
    submit_errors = [s.error for s in subs if not s.job_id]
    if not_final:
        problems.append(f"{len(not_final)} jobs not final: {not_final[:5]}")
    if submit_errors:
        problems.append(f"{len(submit_errors)} submits never accepted: {submit_errors[:3]}")
    # One job per intended submit: the Idempotency-Key made retries return the same job.
    client_ids = Counter(ids)
    extra_rows = [r["id"] for r in rows if r["id"] not in client_ids]
    if extra_rows or any(n > 1 for n in client_ids.values()):
        problems.append(f"jobs no submit asked for (duplicate submits): {extra_rows[:5]}")

    # 2. Storage: each succeeded job has its clip and poster; no object without its job.
    prefix = stack.settings["storage_url"].removeprefix("s3://").partition("/")[2].strip("/")
    keys = [k.removeprefix(f"{prefix}/") for k in s3.keys(f"{prefix}/" if prefix else "")]
    objects: dict[str, set[str]] = defaultdict(set)
    strays: list[str] = []
    for key in keys:
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "jobs" and parts[2] in OBJECT_NAMES:
            objects[parts[1]].add(parts[2])
        else:
            strays.append(key)
    succeeded = [i for i in ids if by_id.get(i, {}).get("status") == "succeeded"]
    missing_media = [i for i in succeeded if not {"clip.mp4", "poster.jpg"} <= objects.get(i, set())]
    orphans = strays + [f"jobs/{j}/*" for j in objects if j not in by_id]
    media_of_unsucceeded = [
        f"jobs/{j}/{name}"
        for j, names in objects.items()
        if j in by_id and by_id[j]["status"] != "succeeded"
        for name in names & MEDIA_NAMES
    ]
    photos_missing = [i for i in ids if "photo.jpg" not in objects.get(i, set())]
    without_gif = [i for i in succeeded if "clip.gif" not in objects.get(i, set())]
    if missing_media:
        problems.append(f"{len(missing_media)} succeeded jobs without clip+poster: {missing_media[:5]}")
    if orphans:
        problems.append(f"{len(orphans)} objects of no job: {orphans[:5]}")
    if media_of_unsucceeded:
        problems.append(f"{len(media_of_unsucceeded)} clips/posters/GIFs of unsucceeded jobs")

    # 3. Successful animate() runs per job, by seed (each job has its own).
    seed_job = {s.seed: s.job_id for s in accepted}
    per_seed: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
    for seed, pid, t0, t1 in runs:
        per_seed[seed].append((pid, t0, t1))
    killed = {f.pid: f.t for f in faults if f.kind == "worker_kill" and f.pid}
    causes: Counter[str] = Counter()
    duplicated_jobs = []
    for seed, job_runs in per_seed.items():
        if len(job_runs) < 2:
            continue
        duplicated_jobs.append(seed_job.get(seed))
        job_runs.sort(key=lambda r: r[1])
        for (pid_a, _a0, a1), (_pid_b, b0, _b1) in zip(job_runs, job_runs[1:], strict=False):
            if b0 < a1:
                causes["concurrent_runs"] += 1
            elif pid_a in killed and killed[pid_a] >= a1:
                causes["worker_killed_after_animate"] += 1
            else:
                causes["rerun_after_retry_or_redelivery"] += 1
    duplicate_runs = sum(len(r) - 1 for r in per_seed.values())
    unknown_seeds = [s for s in per_seed if s not in seed_job]
    succeeded_without_run = [i for i in succeeded if by_id[i]["seed"] not in per_seed]
    if succeeded_without_run:
        problems.append(f"{len(succeeded_without_run)} succeeded jobs with no recorded animator run")

    # 4. Webhooks: `completed` at least once per job; duplicates carry the same webhook-id.
    raw: dict[tuple[str, str], int] = Counter()
    unique: dict[tuple[str, str], set[str]] = defaultdict(set)
    for h in hooks:
        raw[(h.job_id, h.event)] += 1
        unique[(h.job_id, h.event)].add(h.webhook_id)
    no_completed = [i for i in ids if raw[(i, "completed")] == 0]
    split_ids = {e: [i for i in ids if len(unique[(i, e)]) > 1] for e in ("start", "completed")}
    if no_completed:
        problems.append(f"{len(no_completed)} jobs without a completed webhook: {no_completed[:5]}")
    if split_ids["completed"]:
        problems.append(f"{len(split_ids['completed'])} jobs with completed webhooks of several webhook-ids")

    # 5. The allowance: one submissions row per accepted upload.
    subs_rows = db_rows(
        stack.database_url, "SELECT visitor_id, count(*) AS n FROM submissions GROUP BY visitor_id"
    )
    submissions = {r["visitor_id"]: int(r["n"]) for r in subs_rows}
    jobs_per_visitor = Counter(r["visitor_id"] for r in rows)
    allowance_mismatch = {
        v: {"jobs": jobs_per_visitor.get(v, 0), "submissions": submissions.get(v, 0)}
        for v in set(submissions) | set(jobs_per_visitor)
        if submissions.get(v, 0) != jobs_per_visitor.get(v, 0)
    }
    if allowance_mismatch:
        problems.append(f"allowance rows differ from jobs for {len(allowance_mismatch)} visitors")

    # Latency: first POST attempt (client) -> finished_at (server; same machine clock).
    latencies = []
    for s in accepted:
        row = by_id.get(s.job_id or "")
        if row and row["finished_at"] is not None:
            fin = row["finished_at"]
            fin = fin if fin.tzinfo else fin.replace(tzinfo=timezone.utc)
            latencies.append(fin.timestamp() - s.t_first)
    submit_latency = [s.t_accepted - s.t_first for s in accepted]
    lost = len(not_final) + len(submit_errors)
    return {
        "jobs": {
            "intended": len(subs),
            "accepted": len(accepted),
            "submit_retried": sum(1 for s in accepted if s.retried_on),
            "submit_replayed": sum(1 for s in accepted if s.replayed),
            "statuses": dict(statuses),
            "error_codes": dict(errors),
            "not_final": len(not_final),
            "missing_rows": len(missing_rows),
            "lost": lost,
            "attempts": dict(Counter(by_id[i]["attempts"] for i in ids if i in by_id)),
        },
        "faults": dict(Counter(f.kind for f in faults)),
        "fault_log": [asdict(f) for f in faults],
        "storage": {
            "objects": len(keys),
            "succeeded_missing_clip_or_poster": len(missing_media),
            "succeeded_without_gif": len(without_gif),  # allowed (a GIF never fails a job), but counted
            "orphans": len(orphans),
            "orphan_examples": orphans[:10],
            "media_of_unsucceeded": len(media_of_unsucceeded),
            "photos_missing": len(photos_missing),
        },
        "animator": {
            "successful_runs": len(runs),
            "jobs_run": len(per_seed),
            "duplicate_runs": duplicate_runs,
            "jobs_with_duplicates": len(duplicated_jobs),
            "duplicate_causes": dict(causes),
            "duplicated_job_ids": duplicated_jobs[:20],
            "unknown_seeds": len(unknown_seeds),
            "succeeded_without_run": len(succeeded_without_run),
            "workers_killed": len(killed),
        },
        "webhooks": {
            "deliveries": len(hooks),
            "completed_raw": sum(n for (_, e), n in raw.items() if e == "completed"),
            "completed_unique": sum(len(v) for (_, e), v in unique.items() if e == "completed"),
            "start_raw": sum(n for (_, e), n in raw.items() if e == "start"),
            "start_unique": sum(len(v) for (_, e), v in unique.items() if e == "start"),
            "jobs_without_completed": len(no_completed),
            "jobs_without_completed_ids": no_completed[:20],
            "jobs_with_split_completed_ids": len(split_ids["completed"]),
            "jobs_with_split_start_ids": len(split_ids["start"]),
        },
        "allowance": {
            "visitors": len(jobs_per_visitor),
            "submission_rows": sum(submissions.values()),
            "job_rows": len(rows),
            "mismatched_visitors": allowance_mismatch,
        },
        "latency_s": {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": round(max(latencies), 2) if latencies else None,
            "mean": round(statistics.fmean(latencies), 2) if latencies else None,
        },
        "submit_latency_s": {"p50": percentile(submit_latency, 50), "p99": percentile(submit_latency, 99)},
        "problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=0.5, help="fixed animator time per job")
    parser.add_argument("--rate", type=float, default=1.6, help="submits per second")
    parser.add_argument("--visitors", type=int, default=8)
    parser.add_argument("--no-chaos", action="store_true", help="the same run without faults (baseline)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the fault schedule")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs)")
    args = parser.parse_args()
    cfg = ChaosConfig(
        jobs=args.jobs,
        workers=args.workers,
        seconds=args.seconds,
        rate=args.rate,
        visitors=args.visitors,
        chaos=not args.no_chaos,
        seed=args.seed,
    )
    root = Path(tempfile.mkdtemp(prefix="vivify-chaos-"))
    redis = e2e_stack.RedisServer(root)
    postgres = e2e_stack.PostgresServer()
    s3 = e2e_stack.S3Process(root)
    stack: Stack | None = None
    try:
        redis.start()
        postgres.start()
        s3.start()
        s3.create_bucket()
        stack = Stack(root / "stack", redis, postgres, s3, **stack_settings(cfg))
        stack.root.mkdir(parents=True, exist_ok=True)
        report = run(stack, redis, postgres, s3, cfg, root)
    finally:
        if stack is not None:
            stack.stop()
        s3.stop()
        postgres.stop()
        redis.stop()
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": asdict(cfg),
        "run_folder": str(root),
        **report,
    }
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
