"""The second abuse round's starvation attacks, each against a fresh `vivify web` (embedded defaults),
with another visitor timing the site meanwhile. `tests/e2e/test_e2e_second_round_starvation.py` runs them
in `make test` and holds them to the bounds; this script prints the same figures for any checkout, so the
attacks can be measured before and after a change the same way.

Attacks (one client address; the other visitor has its own, through X-Forwarded-For from a trusted
127.0.0.1, so the per-address limits do not mix them):
- rig: 120 `POST /api/v1/photo-check?rig=true` at once, no cookie, with a 900x1100 photo of four faces.
- rig-spread: the same burst from 120 addresses (as a botnet, or one client with many IPv6 /64s would
  send it): no per-address limit binds, only the rig turns' bounded wait.
- again: 70 `POST /api/v1/jobs/{id}/again` bodies (the attacker's own job) declaring 60,000 bytes and
  sending one byte every 5 s.
- nojs: 120 such bodies to the forms that work without JavaScript (`POST /jobs` and
  `POST /jobs/{id}/again`, alternately).

While an attack runs the other visitor loads `/`, uploads a photo (`POST /api/v1/jobs`, 202 expected) and
checks one (`POST /api/v1/photo-check`), each in a loop of its own, twice a second or as fast as answers
come. The web
process's memory is sampled every 0.2 s; after the attack (every attacking connection closed), it is read
until it is back within RECOVERED_MB of its start, for at most a minute.

    .venv/bin/python bench/second_round.py [--checkout PATH] [--attack rig again nojs] [--json out.json]

`--checkout` runs the web process from another working tree (e.g. `git worktree add /tmp/before REV`)
with this environment's Python.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import skimage.data
from matplotlib import cbook
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
ATTACKER, OTHER, WARMER = "198.51.100.66", "203.0.113.10", "192.0.2.44"
RIG_BURST = 120
SLOW_AGAIN = 70
SLOW_NOJS = 120
# Content-Length the slow bodies declare: the round's report used 100,000; the "again" forms now refuse
# over 64 KiB at once (413), so an attacker declares less, and these bodies are read until the deadline.
SLOW_DECLARED = 60_000
SLOW_BYTE_EVERY_S = 5.0
SLOW_WINDOW_S = 20.0  # how long the other visitor is timed while the slow bodies are held
RIG_WINDOW_MIN_S = 10.0
RIG_WINDOW_MAX_S = 60.0
PROBE_TIMEOUT_S = 30.0
RECOVERED_MB = 400
RECOVERY_MAX_S = 60.0


def four_faces(width: int = 900, height: int = 1100) -> bytes:
    """A JPEG of four people on a plain backdrop, two by two: Grace Hopper and the astronaut, each also
    mirrored (four faces the face models find)."""
    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    astronaut = Image.fromarray(skimage.data.astronaut()).crop((100, 0, 400, 340))
    canvas = Image.new("RGB", (width, height), (196, 206, 218))
    cell_w, cell_h = width // 2, height // 2
    for i, face in enumerate([hopper, astronaut, ImageOps.mirror(astronaut), ImageOps.mirror(hopper)]):
        face = ImageOps.contain(face, (cell_w - 20, cell_h - 20))
        x = (i % 2) * cell_w + (cell_w - face.width) // 2
        y = (i // 2) * cell_h + (cell_h - face.height) // 2
        canvas.paste(face, (x, y))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def small_portrait() -> bytes:
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
        img = ImageOps.contain(img.convert("RGB"), (256, 256))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field_name} not in /proc/{pid}/status")


class Web:
    """`vivify web` from `checkout` on a free port, with embedded defaults under a fresh folder."""

    def __init__(self, checkout: Path, root: Path, **settings: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "web.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFY_")}
        env |= {"PYTHONPATH": str(checkout), "PYTHONUNBUFFERED": "1"}
        env |= {
            "VIVIFY_DATA_DIR": str(root / "var"),
            "VIVIFY_SECRET_KEY": secrets.token_urlsafe(32),
            "VIVIFY_ANIMATOR": "push-in",
            "VIVIFY_TRUSTED_PROXIES": "127.0.0.1",
            "VIVIFY_FREE_ANIMATIONS_PER_DAY": "100000",  # the other visitor's uploads are not the point
            "VIVIFY_LOG_LEVEL": "WARNING",
        }
        env |= {f"VIVIFY_{k.upper()}": v for k, v in settings.items()}
        cmd = [sys.executable, "-m", "app.cli", "web", "--migrate", "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"web exited: {self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"web did not start: {self.log()[-3000:]}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Figures:
    attack: str
    attacker: dict[str, int] = field(default_factory=dict)  # answers the attack got, by status
    page_s: list[float] = field(default_factory=list)
    upload_s: list[float] = field(default_factory=list)
    check_s: list[float] = field(default_factory=list)
    other_statuses: dict[str, int] = field(default_factory=dict)  # the other visitor's answers
    base_mb: float = 0.0
    peak_mb: float = 0.0
    after_mb: float = 0.0  # when back within RECOVERED_MB, or at RECOVERY_MAX_S
    recovered_s: float | None = None  # seconds after the attack until within RECOVERED_MB (None: never)
    attack_s: float = 0.0

    def summary(self) -> dict[str, object]:
        def worst(values: list[float]) -> float | None:
            return round(max(values), 3) if values else None

        return {
            "attack": self.attack,
            "attacker_answers": self.attacker,
            "page_max_s": worst(self.page_s),
            "pages_over_1s": sum(v >= 1 for v in self.page_s),
            "pages": len(self.page_s),
            "upload_max_s": worst(self.upload_s),
            "uploads": len(self.upload_s),
            "check_max_s": worst(self.check_s),
            "checks": len(self.check_s),
            "other_statuses": self.other_statuses,
            "base_mb": round(self.base_mb),
            "peak_growth_mb": round(self.peak_mb - self.base_mb),
            "after_growth_mb": round(self.after_mb - self.base_mb),
            "recovered_s": None if self.recovered_s is None else round(self.recovered_s, 1),
            "attack_s": round(self.attack_s, 1),
        }


# One TLS context for every client (plain HTTP here, but httpx would build one per client otherwise:
# ~25 ms each, which would stall the attacker's loop while it makes 120 clients).
TLS = ssl.create_default_context()


def _client(base: str, address: str, timeout: float = PROBE_TIMEOUT_S) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base,
        headers={"X-Forwarded-For": address},
        timeout=timeout,
        verify=TLS,
        limits=httpx.Limits(max_connections=400, max_keepalive_connections=50),
    )


async def _upload(client: httpx.AsyncClient, photo: bytes) -> httpx.Response:
    files = {"photo": ("me.jpg", photo, "image/jpeg")}
    return await client.post("/api/v1/jobs", data={"consent": "true"}, files=files)


async def _timed(figures: Figures, kind: str, call: Awaitable[httpx.Response]) -> None:
    started = time.perf_counter()
    try:
        response = await call
        status = str(response.status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    elapsed = time.perf_counter() - started
    getattr(figures, f"{kind}_s").append(elapsed)
    key = f"{kind} {status}"
    figures.other_statuses[key] = figures.other_statuses.get(key, 0) + 1


async def _other_visitor(base: str, photo: bytes, figures: Figures, stop: threading.Event) -> None:
    """Page, upload and photo check, each in a loop of its own (one slow answer delays only its own
    kind), each at most twice a second."""
    files = {"photo": ("me.jpg", photo, "image/jpeg")}

    async def every(kind: str, call: Callable[[], Awaitable[httpx.Response]]) -> None:
        while not stop.is_set():
            started = time.monotonic()
            await _timed(figures, kind, call())
            await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - started)))

    async with _client(base, OTHER) as other:
        await asyncio.gather(
            every("page", lambda: other.get("/")),
            every("upload", lambda: _upload(other, photo)),
            every("check", lambda: other.post("/api/v1/photo-check", files=files)),
        )


def _memory(pid: int, figures: Figures, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        figures.peak_mb = max(figures.peak_mb, rss_mb(pid))


async def _rig_burst(base: str, photo: bytes, figures: Figures, spread: bool = False) -> None:
    async def one(i: int) -> str:
        files = {"photo": ("group.jpg", photo, "image/jpeg")}
        address = f"198.18.{i // 250}.{i % 250 + 1}" if spread else ATTACKER
        # A client of its own for each: no cookie, so every request is a new visitor.
        async with _client(base, address, timeout=RIG_WINDOW_MAX_S) as attacker:
            try:
                r = await attacker.post("/api/v1/photo-check", params={"rig": "true"}, files=files)
                return str(r.status_code)
            except httpx.HTTPError as exc:
                return type(exc).__name__

    for a in await asyncio.gather(*(one(i) for i in range(RIG_BURST))):
        figures.attacker[a] = figures.attacker.get(a, 0) + 1


async def _slow_body(port: int, path: str, cookie: str, stop: asyncio.Event, figures: Figures) -> None:
    """One request whose body declares SLOW_DECLARED bytes and trickles one every SLOW_BYTE_EVERY_S."""
    boundary = "----vivify-slow"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Forwarded-For: {ATTACKER}\r\n"
        f"Cookie: {cookie}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {SLOW_DECLARED}\r\n\r\n"
    ).encode()
    first = f'--{boundary}\r\nContent-Disposition: form-data; name="motion"\r\n\r\n'.encode()
    status = "held"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        status = type(exc).__name__
    else:
        try:
            writer.write(head + first)
            await writer.drain()
            while not stop.is_set():
                try:
                    line = await asyncio.wait_for(reader.readline(), SLOW_BYTE_EVERY_S)
                except TimeoutError:
                    writer.write(b"a")
                    await writer.drain()
                    continue
                status = line.split(b" ")[1].decode() if line.startswith(b"HTTP/") else "closed"
                break
        except OSError:
            status = "reset"
        finally:
            writer.close()
    figures.attacker[status] = figures.attacker.get(status, 0) + 1


async def _slow_bodies(base: str, port: int, photo: bytes, count: int, paths: str, figures: Figures) -> None:
    async with _client(base, ATTACKER) as attacker:
        r = await _upload(attacker, photo)
        if r.status_code != 202:
            raise RuntimeError(f"the attacker's own job: {r.status_code} {r.text[:200]}")
        job = r.json()["id"]
        cookie = "; ".join(f"{k}={v}" for k, v in attacker.cookies.items())
    targets = {
        "again": [f"/api/v1/jobs/{job}/again"],
        "nojs": ["/jobs", f"/jobs/{job}/again"],
    }[paths]
    stop = asyncio.Event()
    tasks = [
        asyncio.ensure_future(_slow_body(port, targets[i % len(targets)], cookie, stop, figures))
        for i in range(count)
    ]
    await asyncio.sleep(SLOW_WINDOW_S)
    stop.set()
    await asyncio.gather(*tasks)


async def _attack(web: Web, attack: str, group: bytes, photo: bytes, figures: Figures) -> None:
    """The attack in this event loop; the other visitor and the memory sampler in threads of their own,
    so the attacker's own work never delays their timings."""
    stop = threading.Event()
    watchers = [
        threading.Thread(target=_memory, args=(web.proc.pid, figures, stop)),
        threading.Thread(target=lambda: asyncio.run(_other_visitor(web.base, photo, figures, stop))),
    ]
    for watcher in watchers:
        watcher.start()
    started = time.monotonic()
    try:
        if attack in ("rig", "rig-spread"):
            await _rig_burst(web.base, group, figures, spread=attack == "rig-spread")
            await asyncio.sleep(max(0.0, RIG_WINDOW_MIN_S - (time.monotonic() - started)))
        else:
            count = SLOW_AGAIN if attack == "again" else SLOW_NOJS
            await _slow_bodies(web.base, web.port, photo, count, attack, figures)
    finally:
        figures.attack_s = time.monotonic() - started
        stop.set()
        for watcher in watchers:
            watcher.join(PROBE_TIMEOUT_S + 5)


def run_attack(attack: str, checkout: Path = ROOT, **settings: str) -> Figures:
    """Start a web process from `checkout`, warm it, run `attack`, and measure; the process is stopped."""
    group, photo = four_faces(), small_portrait()
    with tempfile.TemporaryDirectory(prefix=f"vivify-{attack}-") as tmp:
        web = Web(checkout, Path(tmp), **settings)
        try:
            with httpx.Client(base_url=web.base, headers={"X-Forwarded-For": WARMER}, timeout=60) as warm:
                files = {"photo": ("group.jpg", group, "image/jpeg")}
                for params in ({}, {"rig": "true"}):  # the face models of both kinds loaded
                    r = warm.post("/api/v1/photo-check", params=params, files=files)
                    if r.status_code != 200:
                        raise RuntimeError(f"warm-up check: {r.status_code} {r.text[:300]}")
                # And one job: the first upload of a process sets up its queue (~2 s, attack or none).
                files = {"photo": ("me.jpg", photo, "image/jpeg")}
                r = warm.post("/api/v1/jobs", data={"consent": "true"}, files=files)
                if r.status_code != 202:
                    raise RuntimeError(f"warm-up upload: {r.status_code} {r.text[:300]}")
            time.sleep(1)
            figures = Figures(attack, base_mb=rss_mb(web.proc.pid))
            figures.peak_mb = figures.base_mb
            hwm_before = rss_mb(web.proc.pid, "VmHWM")
            asyncio.run(_attack(web, attack, group, photo, figures))
            hwm = rss_mb(web.proc.pid, "VmHWM")
            if hwm > hwm_before:  # a peak between two samples
                figures.peak_mb = max(figures.peak_mb, hwm)
            ended = time.monotonic()
            while True:
                figures.after_mb = rss_mb(web.proc.pid)
                waited = time.monotonic() - ended
                if figures.after_mb - figures.base_mb < RECOVERED_MB:
                    figures.recovered_s = waited
                    break
                if waited >= RECOVERY_MAX_S:
                    break
                time.sleep(1)
            figures.other_statuses["web alive"] = int(web.proc.poll() is None)
            figures.other_statuses["unhandled errors in log"] = web.log().count("unhandled error")
        finally:
            web.stop()
    return figures


def main() -> None:
    attacks = ["rig", "rig-spread", "again", "nojs"]
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--checkout", type=Path, default=ROOT)
    parser.add_argument("--attack", nargs="+", choices=attacks, default=attacks)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "-C", str(args.checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    results = []
    for attack in args.attack:
        summary = {"checkout": commit, **run_attack(attack, args.checkout).summary()}
        print(json.dumps(summary), flush=True)
        results.append(summary)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
