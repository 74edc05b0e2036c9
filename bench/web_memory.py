"""Peak memory of the web tier taking 4K, 10 s jobs: a fresh process runs the real app (the embedded
default: SQLite, a folder broker and store) and sends large phone photos through the photo check with
the live view's rig, then as jobs with `resolution=4k` and `duration_s=10`, as a visitor's browser does.
Target: peak RSS < 1.5 GB.

    .venv/bin/python bench/web_memory.py [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import skimage.data
from matplotlib import cbook
from PIL import Image

# (name, size): phone photos with the pixels for 4K; the largest is just under twice the 4K box, so it
# is decoded whole (libjpeg cannot shrink it by an integer factor and keep the box).
PHOTOS = (
    ("grace_hopper 12 MP", (3024, 4032)),
    ("astronaut 24 MP", (6000, 4000)),
    ("grace_hopper 33 MP", (4300, 7600)),
)


def _photo(name: str, size: tuple[int, int]) -> bytes:
    source = (
        Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
        if name.startswith("grace")
        else Image.fromarray(skimage.data.astronaut())
    )
    img = source.resize(size, Image.Resampling.BICUBIC)
    grain = np.random.default_rng(0).normal(0, 6, (size[1], size[0], 1))  # a camera's noise: a real file size
    img = Image.fromarray(np.clip(np.asarray(img, np.float32) + grain, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None)
    ap.add_argument("--make-photos", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_photos:  # in a child: making them costs more memory than the web tier is allowed
        for i, (name, size) in enumerate(PHOTOS):
            with open(os.path.join(args.make_photos, f"{i}.jpg"), "wb") as f:
                f.write(_photo(name, size))
        return
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.web.main import create_app

    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, __file__, "--make-photos", folder], check=True)
        photos = {}
        for i, (name, _) in enumerate(PHOTOS):
            with open(os.path.join(folder, f"{i}.jpg"), "rb") as f:
                photos[name] = f.read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = {}
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(
            _env_file=None,
            data_dir=data,
            animator="portrait",
            rate_limit="1000/minute",
            migrate_on_start=True,
        )
        with TestClient(create_app(settings)) as client:
            start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            for name, jpeg in photos.items():
                files = {"photo": ("photo.jpg", jpeg, "image/jpeg")}
                t = time.perf_counter()
                check = client.post("/api/v1/photo-check?rig=true", data={"duration_s": "10"}, files=files)
                check_s = time.perf_counter() - t
                assert check.status_code == 200, check.text
                fields = {"consent": "true", "duration_s": "10", "resolution": "4k"}
                job = client.post("/api/v1/jobs", data=fields, files=files)
                assert job.status_code == 202, job.text
                body = job.json()
                rows[name] = {
                    "upload_mb": round(len(jpeg) / 2**20, 1),
                    "resolutions": check.json()["resolutions"],
                    "rig": check.json()["rig"] is not None,
                    "check_s": round(check_s, 2),
                    "stored": [body["photo"]["width"], body["photo"]["height"]],
                    "job": [body["resolution"], body["duration_s"]],
                    "peak_rss_mb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                }
                print(name, rows[name], file=sys.stderr, flush=True)
    report = {
        "photos": rows,
        "rss_before_app_mb": round(before),  # the photos' bytes are held by this benchmark too
        "rss_app_started_mb": round(start),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
