"""A small client for a running Vivify service: submit a photo, follow the events stream, save the clip.

Used by `vivify animate PHOTO --server URL`. It speaks only the public HTTP API.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from app.core.tables import FINAL_STATUSES, JobStatus

# The API's job statuses are JobStatus values; a job in one of these changes no more.
FINAL = frozenset(s.value for s in FINAL_STATUSES)


class ClientError(RuntimeError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        err = response.json()["error"]
        raise ClientError(response.status_code, err["code"], err["message"])
    except (ValueError, KeyError, TypeError):
        raise ClientError(response.status_code, "http_error", response.text[:200]) from None


def iter_sse(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event, data) pairs from a text/event-stream response."""
    event = "message"
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


class VivifyClient:
    def __init__(self, server: str, *, timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.http = httpx.Client(base_url=server.rstrip("/"), timeout=timeout_s, transport=transport)

    def __enter__(self) -> VivifyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def submit(
        self,
        photo: Path,
        *,
        motion: str | None = None,
        seed: int | None = None,
        idempotency_key: str | None = None,
        animator: str | None = None,
        webhook: str | None = None,
        webhook_events_filter: str | None = None,
        duration_s: float | None = None,
        resolution: str | None = None,
    ) -> dict[str, Any]:
        """POST the photo. A retried submit with the same idempotency key returns the same job."""
        data: dict[str, str] = {"consent": "true"}
        if duration_s is not None:
            data["duration_s"] = f"{duration_s:g}"
        if resolution:
            data["resolution"] = resolution
        if motion:
            data["motion"] = motion
        if seed is not None:
            data["seed"] = str(seed)
        if animator:
            data["animator"] = animator
        if webhook:
            data["webhook"] = webhook
        if webhook_events_filter:
            data["webhook_events_filter"] = webhook_events_filter
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        with photo.open("rb") as f:
            files = {"photo": (photo.name, f)}
            response = self.http.post("/api/v1/jobs", data=data, files=files, headers=headers)
        _raise_for_error(response)
        return response.json()

    def follow(self, job: dict[str, Any], on_update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Follow the job's events stream until it is final (falls back to polling if the stream drops)."""
        while job["status"] not in FINAL:
            try:
                with self.http.stream("GET", job["urls"]["events"], timeout=None) as response:
                    _raise_for_error(response)
                    for event, data in iter_sse(response):
                        if event == "job":
                            job = json.loads(data)
                            on_update(job)
                            if job["status"] in FINAL:
                                return job
            except httpx.TransportError:
                time.sleep(1.0)
            response = self.http.get(job["urls"]["self"])
            _raise_for_error(response)
            job = response.json()
            on_update(job)
        return job

    def download(self, job: dict[str, Any], out: Path) -> Path:
        with self.http.stream("GET", job["urls"]["video"], follow_redirects=True) as response:
            _raise_for_error(response)
            with out.open("wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
        return out


def animate_remote(
    server: str,
    photo: Path,
    out: Path,
    *,
    motion: str | None = None,
    seed: int | None = None,
    animator: str | None = None,
    duration_s: float | None = None,
    resolution: str | None = None,
    show_progress: bool = True,
    submit_attempts: int = 3,
) -> dict[str, Any]:
    """Submit, follow with a progress bar, save the MP4. Returns the final job.

    A submit that fails on the way (network error, 502/503/504) is sent again with the same
    Idempotency-Key, so it can never start a second animation or spend a second allowance."""
    from tqdm import tqdm

    key = str(uuid.uuid4())
    with VivifyClient(server) as client:
        for attempt in range(submit_attempts):
            try:
                job = client.submit(
                    photo,
                    motion=motion,
                    seed=seed,
                    animator=animator,
                    idempotency_key=key,
                    duration_s=duration_s,
                    resolution=resolution,
                )
                break
            except (httpx.TransportError, ClientError) as exc:
                retryable = isinstance(exc, httpx.TransportError) or exc.status in (502, 503, 504)
                if not retryable or attempt + 1 == submit_attempts:
                    raise
                time.sleep(2**attempt)
        bar = tqdm(total=100, unit="%", disable=not show_progress, bar_format="{l_bar}{bar}| {postfix}")

        def on_update(j: dict[str, Any]) -> None:
            bar.n = round(100 * (j.get("progress") or 0.0))
            pos = j.get("queue_position")
            bar.set_postfix_str(f"{j['status']} · {j.get('stage')}" + (f" · #{pos} in queue" if pos else ""))
            bar.refresh()

        job = client.follow(job, on_update)
        bar.close()
        if job["status"] != JobStatus.SUCCEEDED:
            err = job.get("error") or {}
            raise ClientError(0, err.get("code", job["status"]), err.get("message", f"job {job['status']}"))
        client.download(job, out)
        return job
