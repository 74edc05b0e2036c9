"""What the default motion does to real portraits: "gentle" and "auto" side by side, measured on the frames.

For each portrait (skimage's astronaut and matplotlib's Grace Hopper, each also mirrored, rotated 8° and
cropped tighter around the face) the CPU portrait animator renders a 4 s, 24 fps clip per motion, with the
same seed, and models.face.FaceAnalyzer reads every `--every`-th rendered frame:

- motion   the largest landmark displacement from frame 0, as a share of the face's height (frame 0's);
           lids and lips count too
- head     the same for the face's outline only (FACE_OVAL): the head's own movement
- yaw, pitch, roll   the largest change of the head's angle from frame 0, in degrees
- blinks   how often the eyes' openness (both eyes' mean) drops below half of frame 0's
- shut     the deepest closure: 1 - the least openness / frame 0's (a blink read in full: about 0.6-0.8)
- smile    the largest rise of the face's smile score (0-1) over frame 0's

    .venv/bin/python bench/motion_report.py [--every 2] [--seeds 0] [--side 512] [--out motion_report.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import numpy as np
import skimage.data
from matplotlib import cbook
from PIL import Image, ImageOps

from models.auto_motion import plan_motion
from models.base import AnimationRequest, no_progress
from models.face import FACE_OVAL, FaceAnalyzer, detect_face_box
from models.registry import create_animator

MOTIONS = ("gentle", "auto")
DURATION_S, FPS = 4.0, 24
ROTATE_DEG = 8.0
METRICS = ("motion", "head", "yaw", "pitch", "roll", "blinks", "shut", "smile")


def _long_side(img: Image.Image, side: int) -> Image.Image:
    scale = side / max(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)


def _rotated(img: Image.Image, degrees: float) -> Image.Image:
    """Turned about its centre, the corners filled with the border's mean colour (as a scan's mat)."""
    rgb = np.asarray(img)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).mean(axis=0)
    fill = (int(border[0]), int(border[1]), int(border[2]))
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=fill)


def _cropped(img: Image.Image, side: int) -> Image.Image:
    """A tighter crop: a square of twice the face box's larger side around the face, back to `side`."""
    box = detect_face_box(img)
    if box is None:
        raise RuntimeError("no face to crop around")
    x0, y0, x1, y1 = box
    half = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = min(half, cx, cy, img.width - cx, img.height - cy)  # stay inside the photo
    crop = img.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    return _long_side(crop, side)


def portraits(side: int) -> dict[str, Image.Image]:
    bases = {
        "astronaut": Image.fromarray(skimage.data.astronaut()),
        "grace_hopper": Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"),
    }
    out: dict[str, Image.Image] = {}
    for name, img in bases.items():
        img = _long_side(img, side)
        out[name] = img
        out[f"{name} mirrored"] = ImageOps.mirror(img)
        out[f"{name} rotated {ROTATE_DEG:g}°"] = _rotated(img, ROTATE_DEG)
        out[f"{name} cropped"] = _cropped(img, side)
    return out


def measure(frames: np.ndarray, analyzer: FaceAnalyzer, every: int) -> dict[str, Any]:
    """The face's motion over the clip, read from the rendered frames (see the module's description)."""
    picked = list(range(0, len(frames), every))
    faces = [(i, analyzer.analyze(frames[i], mask=False).faces) for i in picked]
    if not faces[0][1]:
        raise RuntimeError("no face in the clip's first frame")
    first = faces[0][1][0]
    p0, height = first.points[:, :2], first.size
    pose0, open0 = np.array(first.pose()), float(np.mean(first.eye_openness()))
    smile0 = first.smile()
    oval = list(FACE_OVAL)
    moved, head, turned, openness, smiles, missed = [], [], [], [], [], 0
    for _, found in faces:
        if not found:
            missed += 1
            continue
        face = min(found, key=lambda f: float(np.abs(f.points[:, :2] - p0).mean()))  # the same person
        shift = np.linalg.norm(face.points[:, :2] - p0, axis=1)
        moved.append(float(shift.max()) / height)
        head.append(float(shift[oval].max()) / height)
        turned.append(np.abs(np.array(face.pose()) - pose0))
        openness.append(float(np.mean(face.eye_openness())))
        smiles.append(face.smile() - smile0)
    closed = [o < 0.5 * open0 for o in openness]
    blinks = sum(1 for a, b in zip([False, *closed], closed, strict=False) if b and not a)
    angles = np.max(turned, axis=0)
    return {
        "motion": round(max(moved), 4),
        "head": round(max(head), 4),
        "yaw": round(float(angles[0]), 2),
        "pitch": round(float(angles[1]), 2),
        "roll": round(float(angles[2]), 2),
        "blinks": blinks,
        "shut": round(1.0 - min(openness) / open0, 3),
        "smile": round(max(smiles), 3),
        "frames_read": len(picked),
        "frames_without_face": missed,
        "face_height_px": round(height, 1),
        "series": {
            "frame": [i for i, found in faces if found],
            "motion": [round(m, 4) for m in moved],
            "eye_openness": [round(o, 4) for o in openness],
        },
    }


def run(side: int, seeds: list[int], every: int) -> dict[str, Any]:
    animator = create_animator("portrait")
    analyzer = FaceAnalyzer(max_faces=1)
    t = time.perf_counter()
    animator.setup()
    analyzer.setup()
    rows: list[dict[str, Any]] = []
    for name, photo in portraits(side).items():
        for seed in seeds:
            row: dict[str, Any] = {"photo": name, "size": list(photo.size), "seed": seed}
            row["plan"] = plan_motion(photo, "auto", seed, duration_s=DURATION_S, fps=FPS).to_json()
            for motion in MOTIONS:
                t0 = time.perf_counter()
                request = AnimationRequest(motion=motion, seed=seed, duration_s=DURATION_S, fps=FPS)
                frames = np.asarray(animator.animate(photo, request, no_progress).frames)  # drawn here
                t1 = time.perf_counter()
                row[motion] = measure(frames, analyzer, every)
                row[motion]["seconds"] = {
                    "render": round(t1 - t0, 2),
                    "measure": round(time.perf_counter() - t1, 2),
                }
            rows.append(row)
            print(_line(row), flush=True)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "duration_s": DURATION_S,
        "fps": FPS,
        "every": every,
        "seeds": seeds,
        "seconds": round(time.perf_counter() - t, 1),
        "rows": rows,
        "mean": {m: {k: _mean(rows, m, k) for k in METRICS} for m in MOTIONS},
    }


def _mean(rows: list[dict[str, Any]], motion: str, key: str) -> float:
    return round(statistics.fmean(r[motion][key] for r in rows), 4)


def _cells(m: dict[str, Any]) -> list[str]:
    blinks = m["blinks"] if isinstance(m["blinks"], int) else f"{m['blinks']:.1f}"
    return [
        f"{100 * m['motion']:.1f} %",
        f"{100 * m['head']:.1f} %",
        f"{m['yaw']:.1f}",
        f"{m['pitch']:.1f}",
        f"{m['roll']:.1f}",
        f"{blinks}",
        f"{m['shut']:.2f}",
        f"{m['smile']:+.2f}",
    ]


def _line(row: dict[str, Any]) -> str:
    return f"{row['photo']} (seed {row['seed']}): " + " | ".join(
        f"{m}: " + ", ".join(f"{k} {v}" for k, v in zip(METRICS, _cells(row[m]), strict=True))
        for m in MOTIONS
    )


def table(report: dict[str, Any]) -> str:
    """Markdown: one row per photo and seed, gentle's and auto's measures side by side, auto's plan last."""
    head = ["photo"] + [f"{m} {k}" for m in MOTIONS for k in METRICS] + ["auto's plan (intensity)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        plan = f"{r['plan']['description']} ({r['plan']['intensity']:.2f})"
        cells = [r["photo"] + (f", seed {r['seed']}" if len(report["seeds"]) > 1 else "")]
        cells += [c for m in MOTIONS for c in _cells(r[m])] + [plan]
        lines.append("| " + " | ".join(cells) + " |")
    mean = ["**mean**"] + [c for m in MOTIONS for c in _cells(report["mean"][m])] + [""]
    lines.append("| " + " | ".join(mean) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=int, default=2, help="read every n-th rendered frame")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--side", type=int, default=512, help="the portraits' long side in pixels")
    ap.add_argument("--out", default=None, help="also write the report as JSON here")
    args = ap.parse_args()
    report = run(args.side, args.seeds, args.every)
    print()
    print(table(report))
    rows, seeds = len(report["rows"]), len(report["seeds"])
    print(f"\n{rows // seeds} photos x {seeds} seeds x {len(MOTIONS)} motions in {report['seconds']} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
