"""Load test: N concurrent visitors against a running `vivify up`, polling their job once a second
while uploads keep arriving. Reports errors and status-latency percentiles; also samples the page.

    # terminal 1 (allowance raised so one IP can upload many photos; the push-in animator keeps
    # the single CPU worker from being the thing measured)
    VIVIFY_FREE_ANIMATIONS_PER_DAY=100000 VIVIFY_RATE_LIMIT=100000/minute VIVIFY_ANIMATOR=push-in \
        VIVIFY_DATA_DIR=/tmp/vivify-load make run
    # terminal 2
    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 --visitors 200 --seconds 60

The request loop is bounded in count and time and only targets the URL given (loopback by default).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from collections import Counter

import httpx
from PIL import Image


def _photo_bytes(side: int = 256) -> bytes:
    from matplotlib import cbook

    img = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def _timed(stats: dict, key: str, label: str, request) -> httpx.Response | None:
    """Run one request; a timeout or connection error counts as an error, not a crash."""
    t0 = time.perf_counter()
    try:
        r = await request
    except httpx.HTTPError as exc:
        stats["codes"][f"{label} {type(exc).__name__}"] += 1
        return None
    stats[key].append(1000 * (time.perf_counter() - t0))
    stats["codes"][f"{label} {r.status_code}"] += 1
    return r


async def visitor(
    url: str, photo: bytes, deadline: float, start_delay: float, stats: dict, uploads_every_s: float
) -> None:
    await asyncio.sleep(start_delay)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        job_id = None
        next_upload = time.monotonic()
        while time.monotonic() < deadline:
            if job_id is None or time.monotonic() >= next_upload:
                files = {"photo": ("p.jpg", photo, "image/jpeg")}
                post = client.post("/api/v1/jobs", data={"consent": "true"}, files=files)
                r = await _timed(stats, "upload_ms", "POST", post)
                if r is not None and r.status_code == 202:
                    job_id = r.json()["id"]
                next_upload = time.monotonic() + uploads_every_s
            if job_id:
                await _timed(stats, "status_ms", "GET", client.get(f"/api/v1/jobs/{job_id}"))
            await asyncio.sleep(1.0)


async def page_sampler(url: str, deadline: float, stats: dict) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < deadline:
            await _timed(stats, "page_ms", "PAGE", client.get("/"))
            await asyncio.sleep(0.5)


async def main(args: argparse.Namespace) -> int:
    photo = _photo_bytes()
    stats: dict = {"status_ms": [], "upload_ms": [], "page_ms": [], "codes": Counter()}
    deadline = time.monotonic() + args.seconds
    tasks = [
        visitor(args.url, photo, deadline, i * args.ramp_s / args.visitors, stats, args.upload_every_s)
        for i in range(args.visitors)
    ]
    tasks.append(page_sampler(args.url, deadline, stats))
    t0 = time.monotonic()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - t0
    errors = sum(n for code, n in stats["codes"].items() if not code.endswith(("200", "202")))
    print(f"visitors={args.visitors} seconds={elapsed:.0f} requests={sum(stats['codes'].values())}")
    print("responses:", dict(sorted(stats["codes"].items())))
    for key in ("status_ms", "upload_ms", "page_ms"):
        v = stats[key]
        if v:
            print(
                f"{key:10s} n={len(v):6d} p50={_pct(v, 50):7.1f} p95={_pct(v, 95):7.1f} "
                f"p99={_pct(v, 99):7.1f} max={max(v):7.1f} mean={statistics.fmean(v):7.1f}"
            )
    print(f"errors={errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--visitors", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--ramp-s", type=float, default=30, help="spread visitor starts over N s")
    parser.add_argument("--upload-every-s", type=float, default=30, help="each visitor uploads this often")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
