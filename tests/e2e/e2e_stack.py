"""Real servers and Vivify processes for the end-to-end tests, started from the machine's binaries.

Redis (AOF on), Postgres (initdb in a temp folder; as the `postgres` OS user when we are root, since
initdb refuses root) and moto's S3-compatible HTTP server, each on a free port. The Vivify processes
(`vivify web`, `vivify worker`, `vivify up`) run as real subprocesses configured by VIVIFY_* variables.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "vivify-e2e"


def die_with_parent(sig: int) -> Callable[[], None]:
    """A preexec_fn: the child gets `sig` if the test run dies, so no server outlives it (Linux)."""

    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded here: the child may already be another user

    def preexec() -> None:
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG

    return preexec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy without raising."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last = exc
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not ready after {timeout_s:g} s (last error: {last!r})")


class RedisServer:
    """redis-server with append-only persistence, restartable on the same port and data folder."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (run .ci/system-deps)")
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        cmd += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"]
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent(signal.SIGKILL)
            )
        wait_for(self.ping, 10, "redis")

    def ping(self) -> bool:
        import redis

        return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)


class PostgresServer:
    """A throwaway Postgres cluster in a temp folder on a free port."""

    def __init__(self) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not versions:
            raise RuntimeError("Postgres is not installed (run .ci/system-deps)")
        self.bin = versions[-1].parent
        # Not under pytest's 0700 tmp tree: the postgres user must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="vivify-pg-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # initdb refuses to run as root: then run the cluster as the `postgres` OS user (its pid is ours).
        self.user: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self.user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def start(self) -> None:
        data, sock = self.root / "data", self.root / "sock"
        initdb = [str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        initdb += ["--no-sync", "--no-instructions"]
        subprocess.run(initdb, check=True, capture_output=True, **self.user)
        subprocess.run(["mkdir", "-p", str(sock)], check=True, **self.user)
        self.resume()

    def resume(self) -> None:
        """Start the server on its data folder (after start() made it, or after pause())."""
        data, sock = self.root / "data", self.root / "sock"
        cmd = [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(sock)]
        cmd += ["-h", "127.0.0.1"]
        for option in ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200"):
            cmd += ["-c", option]
        with open(self.root / "postgres.log", "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(signal.SIGQUIT),
                **self.user,
            )
        wait_for(lambda: self._connect("postgres"), 20, "postgres")

    def _connect(self, db: str):
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={db}", connect_timeout=2):
            return True

    def create_database(self) -> str:
        import psycopg

        name = "vivify_" + secrets.token_hex(4)
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def pause(self) -> None:
        """Shut the server down (fast mode: connections are cut); resume() brings it back, data intact."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        self.pause()
        shutil.rmtree(self.root, ignore_errors=True)


class S3Server:
    """moto's S3-compatible HTTP server with the bucket created; stoppable to simulate an outage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server: Any = None

    def start(self) -> None:
        """Start (or restart after stop(): moto keeps buckets and objects in this process)."""
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        wait_for(lambda: self.client().list_buckets() is not None, 10, "moto S3")

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class S3Process:
    """moto's S3 server as its own process (`moto_server`), so an outage can be a real stalled server.

    The same face as S3Server (endpoint, client(), keys()). moto keeps objects in memory, so a stop()
    and start() loses them: pause() (SIGSTOP) and resume() (SIGCONT) take storage away instead, with
    every object kept. While paused, connections are accepted by the kernel but never answered.
    """

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "moto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = Path(sys.executable).parent / "moto_server"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
        cmd += ["-H", "127.0.0.1", "-p", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent(signal.SIGKILL)
            )
        wait_for(lambda: self.client().list_buckets() is not None, 30, "moto S3 server", 0.2)

    def create_bucket(self, bucket: str = BUCKET) -> None:
        self.client().create_bucket(Bucket=bucket)

    client = S3Server.client
    keys = S3Server.keys

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused process would not act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Service:
    """One Vivify process (web, worker or up), its output kept in a log file.

    `kind` (web, worker, events, beat) groups processes for a Supervisor's counts. `stopping` is set by
    stop() before the signal goes out: an exit after it is planned, any other exit is the process's own.
    """

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_dir: Path, kind: str = ""
    ) -> None:
        self.name = name
        self.kind = kind or name.split("-")[0]
        exe = Path(sys.executable).parent / "vivify"
        self.cmd = [str(exe)] + args if exe.exists() else [sys.executable, "-m", "app.cli"] + args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.started_at = 0.0  # time.monotonic() of the last start
        self.log_offset = 0  # the log's size at the last start

    def start(self) -> Service:
        self.stopping = False
        self.started_at = time.monotonic()
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(signal.SIGKILL),
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_since_start(self) -> str:
        """What the current (or last) run of the process logged."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            return f.read().decode(errors="replace")

    def send_signal(self, sig: int) -> None:
        """Send `sig` as a planned stop (a Supervisor does not restart the process for it)."""
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int | None:
        self.stopping = True
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@dataclass
class UnplannedExit:
    kind: str
    name: str
    pid: int
    returncode: int | None
    t: float  # wall clock when the exit was seen
    uptime_s: float
    restart_delay_s: float
    last_error: str  # the last critical/error line of its log, shortened
    restarted: bool = False  # False: the stack was stopping by then


class Supervisor:
    """Restarts watched Vivify processes that exit on their own, as docker-compose's
    `restart: unless-stopped` does for every web/worker/webhooks/beat service (docker-compose.yml).

    A process stopped through Service.stop()/signal() (a chaos kill, a web restart, the final stop) is
    planned and left alone. Any other exit is counted per kind and the same Service is started again
    (same command and environment, its log appended to) after `delay_s`, doubled after each exit within
    `quick_s` of the start, up to `max_delay_s` (docker's policy also backs off a crash loop).

    Restarts are started from this object's own thread: a child's parent-death signal fires when the
    thread that started it ends, so the thread lives until close(), after the stack stopped its processes.
    """

    def __init__(
        self,
        delay_s: float = 1.0,
        max_delay_s: float = 30.0,
        quick_s: float = 10.0,
        poll_s: float = 0.2,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.delay_s, self.max_delay_s, self.quick_s, self.poll_s = delay_s, max_delay_s, quick_s, poll_s
        self.log = log
        self.exits: list[UnplannedExit] = []
        self._watched: list[Service] = []
        self._kinds: set[str] = set()  # every kind ever watched, for counts of 0
        self._quick_exits: dict[int, int] = {}  # id(service) -> consecutive quick exits
        self._due: dict[int, float] = {}  # id(service) -> monotonic time of its restart
        self._pending: dict[int, UnplannedExit] = {}  # id(service) -> the exit its restart answers
        self._lock = threading.Lock()
        self._holding = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()

    def watch(self, svc: Service) -> Service:
        with self._lock:
            if svc not in self._watched:
                self._watched.append(svc)
            self._kinds.add(svc.kind)
        return svc

    def hold(self) -> None:
        """Restart nothing from now on (the stack is shutting down); the thread keeps its children."""
        self._holding.set()

    def close(self) -> None:
        """End the thread: call after every process it may have started has exited."""
        self._holding.set()
        self._closed.set()
        self._thread.join(10)

    def counts(self) -> dict[str, int]:
        """Unplanned restarts done, per process kind (0 for a kind that never needed one)."""
        with self._lock:
            counts = dict.fromkeys(sorted(self._kinds), 0)
            for ex in self.exits:
                if ex.restarted:
                    counts[ex.kind] = counts.get(ex.kind, 0) + 1
            return counts

    def summary(self) -> dict[str, Any]:
        """JSON-able: unplanned restarts per process kind, and each exit."""
        with self._lock:
            exits = [asdict(ex) for ex in self.exits]
        return {"unplanned_restarts": self.counts(), "unplanned_exits": exits}

    def _loop(self) -> None:
        while not self._closed.wait(self.poll_s):
            if self._holding.is_set():
                continue
            try:
                self._check()
            except Exception as exc:  # keep supervising; a failed start is retried on the next pass
                self._say(f"[supervisor] error: {exc!r}")

    def _check(self) -> None:
        now = time.monotonic()
        with self._lock:
            watched = list(self._watched)
        for svc in watched:
            key = id(svc)
            if svc.stopping:  # planned: never restarted (a chaos kill starts its own replacement)
                if not svc.alive():
                    with self._lock:
                        self._watched.remove(svc)
                    self._due.pop(key, None)
                    self._pending.pop(key, None)
                continue
            if svc.alive() or svc.proc is None:
                continue
            if key not in self._due:
                uptime = now - svc.started_at
                quick = self._quick_exits.get(key, 0) + 1 if uptime < self.quick_s else 0
                self._quick_exits[key] = quick
                delay = min(self.max_delay_s, self.delay_s * 2 ** max(0, quick - 1))
                ex = UnplannedExit(
                    svc.kind,
                    svc.name,
                    svc.proc.pid,
                    svc.proc.returncode,
                    time.time(),
                    round(uptime, 1),
                    delay,
                    last_error_line(svc.log_since_start()),
                )
                with self._lock:
                    self.exits.append(ex)
                self._due[key] = now + delay
                self._pending[key] = ex
                self._say(
                    f"[supervisor] {svc.name} (pid {ex.pid}) exited on its own with {ex.returncode} after "
                    f"{ex.uptime_s:g} s; restarting in {delay:g} s. {ex.last_error}"
                )
            elif now >= self._due[key] and not svc.stopping:
                del self._due[key]
                svc.start()
                self._pending.pop(key).restarted = True
                self._say(f"[supervisor] {svc.name} restarted (pid {svc.pid})")

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)


def last_error_line(log: str, limit: int = 300) -> str:
    """The last critical (else error) line of a process's log, for the record of why it exited."""
    lines = log.splitlines()
    for level in ("critical", "error"):
        for line in reversed(lines):
            if f'"level": "{level}"' in line or line.startswith(("CRITICAL", "ERROR", "Traceback")):
                try:
                    doc = json.loads(line)
                    line = f"{doc.get('level')}: {doc.get('msg')}"
                except ValueError:
                    pass
                return line[:limit]
    return lines[-1][:limit] if lines else ""


def base_env(**vivify: str) -> dict[str, str]:
    """The parent's environment without any VIVIFY_*/HOST/PORT, plus the given VIVIFY_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFY_") and k not in ("HOST", "PORT")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"VIVIFY_{k.upper()}": v for k, v in vivify.items()})
    return env


METRICS_TOKEN = "e2e-metrics-token"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}

ACTIVE_STACKS: list[Stack] = []


class Stack:
    """The production path: web + workers against real Redis, Postgres and S3."""

    def __init__(
        self, root: Path, redis: RedisServer, postgres: PostgresServer, s3: S3Server, **extra: str
    ) -> None:
        self.root = root
        self.redis, self.s3 = redis, s3
        self.database_url = postgres.create_database()
        self.web_port = free_port()
        self.settings = dict(
            env="development",
            secret_key=secrets.token_urlsafe(32),
            data_dir=str(root / "data"),
            database_url=self.database_url,
            broker_url=redis.url,
            storage_url=f"s3://{BUCKET}",
            s3_endpoint_url=s3.endpoint,
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
            animator="push-in",
            log_level="INFO",
            rate_limit="10000/minute",
            free_animations_per_day="1000",
            metrics_token=METRICS_TOKEN,  # /metrics is served to a scrape with it only
        )
        self.settings.update(extra)
        self.services: list[Service] = []
        # Variables other than VIVIFY_* for every process started from now on (e.g. a test animator's).
        self.extra_env: dict[str, str] = {}
        # With supervise(): restarts processes that exit on their own, as compose's restart policy does.
        self.supervisor: Supervisor | None = None

    def supervise(self, delay_s: float = 1.0, log: Callable[[str], None] | None = None) -> Supervisor:
        """Watch every Vivify process started from now on (and those already running) like compose's
        `restart: unless-stopped`: see Supervisor. Stack.stop() ends it."""
        if self.supervisor is None:
            self.supervisor = Supervisor(delay_s=delay_s, log=log)
            for svc in self.services:
                if svc.alive():
                    self.supervisor.watch(svc)
        return self.supervisor

    def start_service(
        self, name: str, args: list[str], kind: str, env: dict[str, str] | None = None
    ) -> Service:
        """Start a Vivify process (not waited for), kept in `services` and watched if supervised.
        Call from a thread that outlives the process (the main thread): see die_with_parent."""
        svc = Service(name, args, env if env is not None else self.env(), self.root, kind=kind)
        self.services.append(svc.start())
        if self.supervisor is not None:
            self.supervisor.watch(svc)
        return svc

    def env(self, **override: str) -> dict[str, str]:
        return {**base_env(**{**self.settings, **override}), **self.extra_env}

    def web(self) -> Service:
        svc = self.start_service("web", ["web", "--migrate", "--port", str(self.web_port)], "web")
        wait_for(lambda: self._healthy(svc), 60, f"web (log: {svc.log()[-2000:]})", 0.2)
        return svc

    def restart_web(self, sig: int = signal.SIGTERM) -> Service:
        """Stop the running web process(es) with `sig` and start a fresh one on the same port."""
        for svc in self.services:
            if svc.name == "web" and svc.alive():
                svc.stop(sig)
        return self.web()

    def events_worker(self, name: str = "events", beat: bool = False, threads: int = 4) -> Service:
        """A light consumer of the webhooks queue (threads pool, as `vivify up` runs one); with `beat`
        it also consumes the maintenance queue and runs the periodic tasks (the reconciler)."""
        queues = "webhooks,maintenance" if beat else "webhooks"
        args = ["worker", "-Q", queues, "--pool", "threads", "-c", str(threads), "-n", f"{name}@e2e"]
        svc = self.start_service(f"worker-{name}", args + (["--beat"] if beat else []), "events")
        wait_for(lambda: self._ready(svc), 60, f"worker {name}", 0.2)
        return svc

    def _healthy(self, svc: Service) -> bool:
        if not svc.alive():
            raise RuntimeError(f"web exited: {svc.log()[-3000:]}")
        return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200

    def worker(self, name: str = "w1", beat: bool = False, **override: str) -> Service:
        """`vivify worker` on its default queues; with `beat` it also runs the periodic tasks (reconciler)."""
        args = ["worker", "-n", f"{name}@e2e"] + (["--beat"] if beat else [])  # default queues
        svc = self.start_service(f"worker-{name}", args, "worker", self.env(**override))
        wait_for(lambda: self._ready(svc), 60, f"worker {name}", 0.2)
        return svc

    def job_row(self, job_id: str) -> dict[str, Any]:
        """The job's row, read straight from Postgres."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                row = conn.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id}).mappings().one()
                return dict(row)
        finally:
            engine.dispose()

    def submit(self, client: httpx.Client, photo: bytes, seed: int, **fields: str) -> str:
        r = client.post(
            "/api/v1/jobs",
            files={"photo": ("portrait.jpg", photo, "image/jpeg")},
            data={"consent": "true", "seed": str(seed), **fields},
        )
        assert r.status_code == 202, r.text
        return r.json()["id"]

    @staticmethod
    def _ready(svc: Service) -> bool:
        if not svc.alive():
            raise RuntimeError(f"{svc.name} exited: {svc.log()[-3000:]}")
        return " ready." in svc.log()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, follow_redirects=False)

    def logs(self) -> str:
        return "\n".join(f"===== {s.name} =====\n{s.log()[-4000:]}" for s in self.services)

    def stop(self) -> None:
        """SIGTERM every process at once (warm shutdowns overlap), then wait for each."""
        if self.supervisor is not None:
            self.supervisor.hold()  # a stop is planned: restart nothing
        for svc in self.services:
            svc.send_signal(signal.SIGTERM)
        for svc in reversed(self.services):
            svc.stop()
        if self.supervisor is not None:
            self.supervisor.close()  # only now: its thread is the parent of the processes it restarted


def wait_final(client: httpx.Client, job_id: str, timeout_s: float = 90) -> dict[str, Any]:
    """Poll the job until it is final; returns its JSON."""

    def final() -> dict[str, Any] | None:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    return wait_for(final, timeout_s, f"job {job_id} final", 0.25)


def queued_messages(broker: Any) -> int:
    """Messages waiting in Redis for the animate queues (any per-animator queue, any priority list)."""
    return sum(broker.llen(key) for key in broker.keys("animate*") if broker.type(key) == b"list")
