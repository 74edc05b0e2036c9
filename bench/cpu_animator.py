"""Benchmark of the CPU portrait animator against its speed and memory targets.

1. Speed: a 4 s, 24 fps clip from a 768-px portrait, analysis + render + encode, pinned to ONE core
   (the script restarts itself under `taskset -c`, so every thread and child is pinned; OpenCV, BLAS and
   ffmpeg on one thread). Wall and CPU seconds are both reported. Target: <= 10 ms of CPU per output frame.
2. Memory: `render_clip` on a 12-megapixel photo in a fresh process. Target: peak RSS < 1.5 GB.
3. `--big`: 4K and 10 s clips as a worker makes them (render, encode and the clip check, through the
   guard), each in a fresh pinned process: ms per frame (wall and CPU), peak RSS, MP4 size. Target: peak
   RSS < 1.5 GB for a 4K, 10 s clip.

    .venv/bin/python bench/cpu_animator.py [--repeat 3] [--motion gentle] [--json out.json]
    .venv/bin/python bench/cpu_animator.py --against /tmp/old /tmp/main --rounds 4 --motion gentle

`--against` measures the animator of other checkouts (git worktrees) side by side with this one,
interleaved: each round renders each portrait once in every tree, each in its own pinned process that
imports that tree's code, so machine noise falls on all of them alike. Medians over the rounds.
    .venv/bin/python bench/cpu_animator.py --docs docs/   # re-render the README's GIFs and strips
    .venv/bin/python bench/cpu_animator.py --big [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import skimage.data
from matplotlib import cbook
from PIL import Image


def portraits(long_side: int) -> dict[str, Image.Image]:
    gh = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    ast = Image.fromarray(skimage.data.astronaut())
    out = {}
    for name, img in (("grace_hopper", gh), ("astronaut", ast)):
        scale = long_side / max(img.size)
        out[name] = img.resize(
            (round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS
        )
    return out


def speed(repeat: int, motion: str | None) -> dict:
    import cv2

    from models.base import AnimationRequest
    from models.portrait import PortraitAnimator
    from models.render import render_clip

    cv2.setNumThreads(1)
    animator = PortraitAnimator()
    t = time.perf_counter()
    animator.setup()
    setup_s = time.perf_counter() - t
    results = {}
    for name, photo in portraits(768).items():
        runs = []
        for seed in range(repeat):
            t, cpu = time.perf_counter(), _cpu_seconds()
            clip = render_clip(animator, photo, AnimationRequest(motion=motion, seed=seed, duration_s=4.0))
            runs.append({"total": time.perf_counter() - t, "cpu": _cpu_seconds() - cpu, **clip.stage_seconds})
        n = clip.frame_count

        def per_frame(key: str, runs: list[dict] = runs, n: int = n) -> float:
            return round(1000 * statistics.median(r[key] for r in runs) / n, 2)

        results[name] = {
            "size": list(photo.size),
            "frames": n,
            "runs_s": [{k: round(v, 3) for k, v in r.items()} for r in runs],
            # Medians over the runs, in ms per output frame. "cpu" is CPU time of this process plus
            # ffmpeg: what one free core needs. Wall time on a shared machine also counts waiting.
            "ms_per_frame": {k: per_frame(k) for k in ("total", "cpu", "analyzing", "animating", "encoding")},
        }
    return {"setup_s": round(setup_s, 3), "cores": 1, "portraits": results}


def speed_child(tree: str, motion: str | None, kept: bool = False) -> None:
    """Runs in a fresh, pinned process that imports `tree`'s code: one clip of each portrait, printed as
    one JSON line of per-clip seconds (wall, CPU with ffmpeg, and the stages). `kept`: the photo check's
    rig is kept in a file beforehand, as the web tier keeps it, and read and parsed inside the timing."""
    sys.path.insert(0, tree)
    import tempfile
    from dataclasses import replace

    import cv2

    from models.base import AnimationRequest
    from models.portrait import PortraitAnimator
    from models.render import render_clip

    cv2.setNumThreads(1)
    animator = PortraitAnimator()
    animator.setup()
    out = {}
    folder = tempfile.mkdtemp()
    for name, photo in portraits(768).items():
        request = AnimationRequest(motion=motion, seed=0, duration_s=4.0)
        render_clip(animator, photo, request)  # the first clip of a process warms its caches
        rig_file = os.path.join(folder, f"{name}.json")
        if kept:
            from models.portrait.mesh import rig_of_photo

            rig = rig_of_photo(photo, max_side=animator.max_side, max_faces=animator.max_faces)
            assert rig is not None
            with open(rig_file, "w") as f:
                json.dump(rig.to_json(), f)
        t, cpu = time.perf_counter(), _cpu_seconds()
        if kept:
            with open(rig_file) as f:
                request = replace(request, rig=json.load(f))
        clip = render_clip(animator, photo, request)
        out[name] = {
            "total": time.perf_counter() - t, "cpu": _cpu_seconds() - cpu, "frames": clip.frame_count,
            "bytes": len(clip.mp4), **clip.stage_seconds,
        }  # fmt: skip
    print(json.dumps(out))


KEPT = " (kept rig)"


def interleaved(trees: list[str], rounds: int, motion: str | None) -> dict:
    """Each round, each tree in turn, one pinned child process each: every tree building its rig, then
    every tree that can keep one (this one, last in `trees`, and any whose code keeps the photo check's
    rig) with the rig kept as the photo check keeps it."""
    keeps = [tree for tree in trees if _keeps_rigs(tree)]
    runs: dict[str, list[dict]] = {tree: [] for tree in [*trees, *(tree + KEPT for tree in keeps)]}
    for r in range(rounds):
        for tree in runs:
            command = [sys.executable, __file__, "--speed-child", tree.removesuffix(KEPT)]
            command += ["--motion", motion] if motion else []
            command += ["--kept-rig"] if tree.endswith(KEPT) else []
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[tree].append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = runs[tree][-1]
            per_frame = [
                f"{name} {1000 * v['cpu'] / v['frames']:.2f} ms/frame CPU" for name, v in row.items()
            ]
            print(f"round {r + 1} {tree}: " + ", ".join(per_frame), file=sys.stderr, flush=True)
    table: dict = {}
    for tree, rows in runs.items():
        table[tree] = {}
        for name in rows[0]:
            n = rows[0][name]["frames"]
            keys = [k for k in rows[0][name] if k not in ("frames", "bytes")]
            table[tree][name] = {
                "ms_per_frame": {
                    k: round(1000 * statistics.median(r[name][k] for r in rows) / n, 2) for k in keys
                },
                "cpu_ms_per_round": [round(1000 * r[name]["cpu"] / n, 2) for r in rows],
                "mp4_bytes": rows[-1][name]["bytes"],
            }
    return {"rounds": rounds, "motion": motion, "cores": 1, "trees": table}


def _keeps_rigs(tree: str) -> bool:
    """Whether `tree`'s animator takes the photo check's rig with the request (AnimationRequest.rig)."""
    with open(os.path.join(tree, "models", "base.py")) as f:
        return "\n    rig: " in f.read()


def _cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def memory_child() -> None:
    """Runs in a fresh process: one clip from a 12-MP photo, then print peak RSS."""
    from models.base import AnimationRequest
    from models.portrait import PortraitAnimator
    from models.render import render_clip

    photo = portraits(4000)["grace_hopper"]  # 3413 x 4000 = 13.7 MP
    t = time.perf_counter()
    clip = render_clip(PortraitAnimator(), photo, AnimationRequest(seed=0))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "photo_px": list(photo.size), "megapixels": round(photo.width * photo.height / 1e6, 1),
        "clip": [clip.width, clip.height, clip.frame_count], "seconds": round(time.perf_counter() - t, 2),
        "peak_rss_mb": round(peak_mb),  # this process; ffmpeg (a separate process) streams frames
    }))  # fmt: skip


def memory() -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child"], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


WIDE = "astronaut_16x9"
# (name, resolution, seconds): the clips --big makes of each 4K-eligible portrait.
BIG_CLIPS = (("hd-4s", "hd", 4.0), ("hd-10s", "hd", 10.0), ("4k-4s", "4k", 4.0), ("4k-10s", "4k", 10.0))


def big_child(name: str, portrait: str) -> None:
    """Runs in a fresh, pinned process: one clip as the worker makes it (the guard: render_clip, then the
    clip check), printed as one JSON line with its peak RSS, which includes the check's models."""
    import cv2

    from models.base import AnimationRequest
    from models.clip_check import ClipChecker
    from models.clip_shape import uhd_size
    from models.guard import Guard, GuardMode
    from models.portrait import PortraitAnimator
    from models.video import Mp4Writer

    cv2.setNumThreads(1)
    resolution, seconds = next((r, s) for n, r, s in BIG_CLIPS if n == name)
    if portrait == WIDE:  # the astronaut's top 16:9: a landscape photo that fills the whole 4K frame
        photo = Image.fromarray(skimage.data.astronaut()[:288]).resize((3840, 2160), Image.Resampling.LANCZOS)
    else:
        photo = portraits(3840)[portrait]
    photo = photo.resize(uhd_size(photo.size), Image.Resampling.LANCZOS)  # as the web tier stores it
    # ffmpeg's own peak (VmHWM), read as its input ends: RUSAGE_CHILDREN would report the peak of the
    # forked copy of this process before it became ffmpeg.
    ffmpeg_peaks: list[int] = []
    finish = Mp4Writer.finish

    def finish_measured(self: Mp4Writer) -> bytes:
        if self._process is not None:
            with open(f"/proc/{self._process.pid}/status") as f:
                kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
            ffmpeg_peaks.append(kb // 1024)
        return finish(self)

    Mp4Writer.finish = finish_measured  # type: ignore[method-assign]
    animator = PortraitAnimator()
    animator.setup()
    checker = ClipChecker()
    checker.setup()
    guard = Guard(checker, mode=GuardMode.OFF)  # one render and one check, whatever the verdict
    request = AnimationRequest(motion="gentle", seed=0, duration_s=seconds, resolution=resolution)
    t, cpu = time.perf_counter(), _cpu_seconds()
    checked = guard.render(animator, photo, request, lambda *a: None)
    wall, cpu = time.perf_counter() - t, _cpu_seconds() - cpu
    clip, n = checked.clip, checked.clip.frame_count
    print(json.dumps({
        "photo": list(photo.size), "clip": [clip.width, clip.height, n], "seconds": round(n / 24, 2),
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "ms_per_frame": {"wall": round(1000 * wall / n, 2), "cpu": round(1000 * cpu / n, 2)},
        "check_s": round(checked.check.seconds, 2), "passed": checked.check.passed,
        "mp4_mb": round(len(clip.mp4) / 2**20, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "ffmpeg_peak_rss_mb": max(ffmpeg_peaks),
    }))  # fmt: skip


def big() -> dict:
    out: dict = {}
    for portrait in ("grace_hopper", "astronaut", WIDE):
        for name, _, _ in BIG_CLIPS:
            if portrait == WIDE and not name.startswith("4k"):
                continue
            command = [sys.executable, __file__, "--big-child", name, "--portrait", portrait]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            out[f"{portrait} {name}"] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{portrait} {name}: {out[f'{portrait} {name}']}", file=sys.stderr, flush=True)
    return out


def docs(folder: str) -> list[str]:
    """Looping GIFs (12 fps, every other frame) and PNG strips of real renders for the README."""
    from models.base import AnimationRequest
    from models.motion import parse_motion
    from models.portrait import PortraitAnimator

    animator = PortraitAnimator(max_side=320)
    people = portraits(320)
    written = []

    def render(name: str, motion: str, seed: int = 1) -> np.ndarray:
        request = AnimationRequest(motion=motion, seed=seed, duration_s=4.0)
        return np.asarray(animator.animate(people[name], request, lambda *a: None).frames)

    for name, motion in (("grace_hopper", "gentle"), ("astronaut", "smile"), ("grace_hopper", "look-around")):
        frames = render(name, motion)
        path = os.path.join(folder, f"portrait-{motion}.gif")
        # One shared palette and no dithering: the still background then costs nothing after frame one.
        palette = Image.fromarray(frames[0]).quantize(colors=255, method=Image.Quantize.MEDIANCUT)
        size = (frames.shape[2] * 3 // 4, frames.shape[1] * 3 // 4)  # 240 px: keeps each GIF well under 2 MB
        palette = palette.resize(size, Image.Resampling.NEAREST)
        images = [
            Image.fromarray(f)
            .resize(size, Image.Resampling.LANCZOS)
            .quantize(palette=palette, dither=Image.Dither.NONE)
            for f in frames[::2]
        ]
        images[0].save(path, save_all=True, append_images=images[1:], duration=83, loop=0, optimize=False)
        written.append(path)

    # A blink, frame by frame, around the eyes (2x enlarged so the lids are visible).
    frames = render("grace_hopper", "blink", seed=0)
    blink = parse_motion("blink", 0).sample(len(frames), 24)["blink"]
    peak = int(np.argmax(blink))
    h, w = frames.shape[1:3]
    eyes = (slice(int(0.25 * h), int(0.41 * h)), slice(int(0.27 * w), int(0.72 * w)))
    picks = [0, peak - 3, peak - 1, peak, peak + 2, peak + 5]
    strip = np.concatenate([frames[i][eyes] for i in picks], axis=1)
    path = os.path.join(folder, "portrait-blink.png")
    Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2), Image.Resampling.LANCZOS).save(
        path
    )
    written.append(path)

    # The photo, then the most extreme frame of each preset.
    row = [frames[0]]
    for motion, key in (("smile", "smile"), ("look-around", "yaw"), ("nod", "pitch"), ("surprised", "brow")):
        f = render("grace_hopper", motion)
        curve = parse_motion(motion, 1).sample(len(f), 24)[key]
        row.append(f[int(np.argmax(np.abs(curve)))])
    path = os.path.join(folder, "portrait-presets.png")
    Image.fromarray(np.concatenate(row, axis=1)).save(path, optimize=True)
    written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--motion", default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--speed-child", metavar="TREE", help=argparse.SUPPRESS)
    ap.add_argument("--kept-rig", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--big", action="store_true", help="4K and 10 s clips: time, memory, file size")
    ap.add_argument("--big-child", metavar="CLIP", help=argparse.SUPPRESS)
    ap.add_argument("--portrait", default="grace_hopper", help=argparse.SUPPRESS)
    ap.add_argument(
        "--against", nargs="+", metavar="TREE", help="other checkouts to interleave with this one"
    )
    ap.add_argument("--rounds", type=int, default=4, help="with --against: rounds of one clip per tree")
    ap.add_argument("--docs", metavar="FOLDER", help="only render the README images into FOLDER")
    args = ap.parse_args()
    if args.docs:
        for path in docs(args.docs):
            print(path, os.path.getsize(path) // 1024, "KiB")
        return
    if args.memory_child:
        memory_child()
        return
    if args.speed_child:
        speed_child(args.speed_child, args.motion, args.kept_rig)
        return
    if args.big_child:
        big_child(args.big_child, args.portrait)
        return
    if args.big:
        text = json.dumps({"cores": 1, "clips": big()}, indent=2)
        print(text)
        if args.json:
            with open(args.json, "w") as f:
                f.write(text + "\n")
        return
    if args.against:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        report = interleaved([*args.against, here], args.rounds, args.motion)
        text = json.dumps(report, indent=2)
        print(text)
        if args.json:
            with open(args.json, "w") as f:
                f.write(text + "\n")
        return
    report = {"speed": speed(args.repeat, args.motion), "memory_12mp": memory()}
    report["speed"]["numpy"] = np.__version__
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


def pin_to_one_core() -> None:
    """Run this whole process on one core: every thread and every child (ffmpeg), as `taskset -c N`
    does. sched_setaffinity(0, …) from inside pins only the calling thread, and a thread started before
    it (BLAS, OpenCV) kept both cores: a run's CPU time then exceeded its wall time. So the script starts
    itself again under taskset, with BLAS and OpenMP on one thread, before anything is imported."""
    if len(os.sched_getaffinity(0)) == 1 and os.environ.get("OMP_NUM_THREADS") == "1":
        return
    cpu = str(sorted(os.sched_getaffinity(0))[0])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    os.execvpe("taskset", ["taskset", "-c", cpu, sys.executable, *sys.argv], env)


if __name__ == "__main__":
    pin_to_one_core()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
