"""The clip check (models.clip_check) on real clips: its figures, what it costs, and the guard's cases.

    taskset -c 0 .venv/bin/python bench/clip_check.py                  # one core, as the limit is stated
    .venv/bin/python bench/clip_check.py --clips DIR_OR_TAR            # MP4s a GPU plan brought back

1. Every packaged portrait (Grace Hopper, the astronaut) through the portrait animator with `auto` and
   three presets, at 768 px on the long side as bench/cpu_animator.py renders them (OpenCV on one
   thread): one row per clip with identity (max, mean), face kept, jitter,
   flicker, colour (CIEDE2000), life, seam and the check's seconds. Render and check alternate clip by
   clip (`--repeats` rounds; medians), each timed in wall and CPU seconds, ffmpeg's child processes
   included, so the check's share of the job's render time is a ratio measured side by side.
2. The guard's cases: a frozen clip, injected flicker, a shaking face, a morph of one portrait into the
   other, and a random-weight diffusion pipeline's noise (where torch and diffusers are installed).
3. The calibration: the largest jitter and flicker over (1), and the limits K_STEADY times them; the
   constants in models/clip_check.py must be these numbers (the script says when they are not).
4. What the check costs on CPU: the photo's analysis once per job, and the rest per sampled frame. A
   portrait clip's check is timed as a job's first check is (`as_in_a_job`): the portrait animator's
   own reading of the photo reused, the descriptors taken.

With `--clips`, each MP4 in the folder (or tar) is checked against the photo the GPU plan animated
(Grace Hopper), and the same columns are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
from matplotlib import cbook
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import clip_check  # noqa: E402
from models.base import AnimationRequest, Clip  # noqa: E402
from models.clip_check import ClipCheck, ClipChecker, Promise  # noqa: E402
from models.portrait import PortraitAnimator  # noqa: E402
from models.render import render_clip  # noqa: E402
from models.video import encode_mp4, read_frames  # noqa: E402

MOTIONS = ("auto", "gentle", "smile", "look-around")


def portraits(long_side: int | None = None) -> dict[str, Image.Image]:
    """The packaged portraits, at their own size or scaled to `long_side` (bench/cpu_animator.py's)."""
    photos = {
        "grace_hopper": Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"),
        "astronaut": Image.fromarray(skimage.data.astronaut()),
    }
    if long_side is None:
        return photos
    return {
        name: img.resize(
            (round(img.width * long_side / max(img.size)), round(img.height * long_side / max(img.size))),
            Image.Resampling.LANCZOS,
        )
        for name, img in photos.items()
    }


def cpu_now() -> float:
    """This process's CPU seconds and its waited-for children's (ffmpeg encodes and decodes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), cpu_now()
    out = fn()
    return out, time.perf_counter() - wall, cpu_now() - cpu


def row(name: str, check: ClipCheck, extra: str = "") -> str:
    def f(v: float | None, digits: int = 3) -> str:
        return "—" if v is None else f"{v:.{digits}f}"

    face = check.faces[0] if check.faces else None
    verdict = "pass" if check.passed else "FAIL: " + "; ".join(x.split(":")[0] for x in check.failures)
    return (
        f"| {name} | {f(face and face.identity_max, 2)} | {f(face and face.identity_mean, 2)} | "
        f"{f(face and face.kept, 2)} | {f(check.jitter, 4)} | {f(check.flicker, 3)} | "
        f"{f(check.color_delta_e, 2)} | {f(check.life, 3)} | {f(check.seam, 2)} | "
        f"{check.seconds:.2f} |{extra} {verdict} |"
    )


HEADER = (
    "| clip | identity max | identity mean | face kept | jitter | flicker ΔL* | colour ΔE00 | life "
    "| seam ΔL* "
    "| check s |"
)


def as_in_a_job(checker: ClipChecker, photo: Image.Image, clip: Clip, promise: Promise) -> ClipCheck:
    """The check as the guard runs it for a job's first clip: the photo read (reusing the animator's own
    reading where it made one), then the clip measured; `seconds` counts both."""
    t0 = time.perf_counter()
    reference = checker.reference(photo, clip.photo_analysis)
    analysed_s = time.perf_counter() - t0
    check = checker.check(reference, clip.mp4, frames=clip.frame_count, promise=promise)
    check.seconds += analysed_s
    return check


def portrait_rows(checker: ClipChecker, repeats: int) -> tuple[list[ClipCheck], list[str]]:
    animator = PortraitAnimator()
    animator.setup()
    checks: list[ClipCheck] = []
    lines = [
        HEADER + " render wall / CPU s | check wall / CPU s | check ÷ render (wall, CPU) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    print(lines[0], lines[1], sep="\n")
    for name, photo in portraits(768).items():
        for motion in MOTIONS:
            renders, checks_t = [], []
            check = None
            for _ in range(repeats):  # render, then check, round by round: the two are interleaved
                request = AnimationRequest(motion=motion, seed=7)
                clip, rw, rc = timed(lambda: render_clip(animator, photo, request))  # noqa: B023
                promise = Promise(clip.moves, clip.loops)
                check, cw, cc = timed(lambda: as_in_a_job(checker, photo, clip, promise))  # noqa: B023
                renders.append((rw, rc))
                checks_t.append((cw, cc))
            assert check is not None
            rw, rc = (statistics.median(x) for x in zip(*renders, strict=True))
            cw, cc = (statistics.median(x) for x in zip(*checks_t, strict=True))
            extra = f" {rw:.2f} / {rc:.2f} | {cw:.2f} / {cc:.2f} | {cw / rw:.0%}, {cc / rc:.0%} |"
            checks.append(check)
            lines.append(row(f"{name} {motion}", check, extra))
            print(lines[-1], flush=True)
    return checks, lines


def morph(source: Image.Image, target: Image.Image, frames: int = 96) -> np.ndarray:
    """`source` slowly becoming the person in `target`: target's face warped onto source's (a similarity
    transform through both faces' landmarks) and cross-faded in; tests/models/test_clip_check.py uses it
    too."""
    import cv2

    from models.face import FaceAnalyzer

    analyzer = FaceAnalyzer()
    a = analyzer.analyze(source, mask=False).faces[0].points[:, :2].astype(np.float32)
    b = analyzer.analyze(target, mask=False).faces[0].points[:, :2].astype(np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(b, a)
    w, h = source.size
    warped = cv2.warpAffine(np.asarray(target), matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
    t = np.linspace(0.0, 1.0, frames)[:, None, None, None]
    return (np.asarray(source).astype(np.float32) * (1 - t) + warped * t + 0.5).astype(np.uint8)


def guard_rows(checker: ClipChecker) -> list[str]:
    photos = portraits()
    gh = photos["grace_hopper"]
    animator = PortraitAnimator()
    animator.setup()
    gentle = read_frames(render_clip(animator, gh, AnimationRequest(motion="gentle", seed=3)).mp4)
    rng = np.random.default_rng(0)
    flicker = gentle.astype(np.float32)
    flicker[1::2] *= 1.08
    cases: dict[str, tuple[np.ndarray, Promise]] = {
        "frozen (the photo, 96 frames)": (np.repeat(np.asarray(gh)[None], 96, axis=0), Promise()),
        "flicker (every other frame +8 %)": (np.clip(flicker, 0, 255).astype(np.uint8), Promise(loops=True)),
        "shaking (±6 px a frame)": (
            np.stack([np.roll(f, tuple(rng.integers(-6, 7, size=2)), axis=(0, 1)) for f in gentle]),
            Promise(),
        ),
        "morph into the astronaut": (morph(gh, photos["astronaut"]), Promise()),
    }
    lines = [HEADER + " verdict |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    print(lines[0], lines[1], sep="\n")
    for name, (frames, promise) in cases.items():
        lines.append(row(name, checker.check(gh, encode_mp4(frames, 24), promise=promise)))
        print(lines[-1], flush=True)
    noise = noise_clip(gh)
    if noise is not None:
        lines.append(row("random-weight SVD (64², noise)", checker.check(gh, noise)))
        print(lines[-1], flush=True)
    return lines


def noise_clip(photo: Image.Image) -> bytes | None:
    """A tiny random-weight SVD's clip of the photo (tests' fixture), where the GPU extra is installed."""
    try:
        import tempfile

        from bench.tiny_pipelines import build_tiny_svd
        from models.registry import create_animator
    except ImportError as exc:
        print(f"(no noise row: {exc})")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        animator = create_animator("diffusion", model=str(build_tiny_svd(Path(tmp) / "svd")))
        animator.setup()
        return render_clip(animator, photo, AnimationRequest(seed=1)).mp4


def cost_lines(checker: ClipChecker, checks: list[ClipCheck]) -> list[str]:
    from models.postprocess import fit_to_face
    from models.push_in import PushInAnimator

    photo = portraits()["grace_hopper"]
    analyses = [timed(lambda: checker.reference(photo))[2] for _ in range(3)]
    analysis = statistics.median(analyses)
    portrait = PortraitAnimator()
    reading = render_clip(portrait, photo, AnimationRequest(frames=24)).photo_analysis
    reused = statistics.median(timed(lambda: checker.reference(photo, reading))[2] for _ in range(3))
    per_check = statistics.median(c.seconds for c in checks)
    frames = checks[0].sampled_frames
    # A clip at SVD-XT's shape (1024×576, 86 frames after interpolation to 24 fps): the photo fitted
    # around the face as the diffusion animator fits it, under a slow push-in.
    fitted = fit_to_face(photo, (1024, 576)).image
    wide = render_clip(PushInAnimator(max_side=1024), fitted, AnimationRequest(frames=86))
    _, wide_wall, wide_cpu = timed(lambda: checker.check(photo, wide.mp4, frames=wide.frame_count))
    return [
        f"- a clip at SVD-XT's shape (1024×576, 86 frames), checked against the 512×600 photo: "
        f"{wide_wall:.2f} s wall, {wide_cpu:.2f} CPU s, the photo's analysis included",
        f"- the photo's analysis (faces, mask, one descriptor per face): {analysis:.3f} CPU s, once per job; "
        f"{reused:.3f} CPU s reusing the portrait animator's own reading of it (the descriptors alone)",
        f"- a whole check of a 4 s clip: {per_check:.3f} s wall (median of the rows above), "
        f"{frames} sampled frames: {(per_check - analysis) / frames * 1000:.0f} ms per sampled frame "
        "(decode, landmarks, background; one or two descriptors a clip)",
    ]


def calibration(checks: list[ClipCheck]) -> list[str]:
    jitter = max(c.jitter or 0.0 for c in checks)
    flicker = max(c.flicker or 0.0 for c in checks)
    k = clip_check.K_STEADY
    lines = [
        f"- largest jitter over these clips: {jitter:.4f}; the limit, K_STEADY = {k:g} times it: "
        f"{k * jitter:.4f}",
        f"- largest flicker: {flicker:.3f} ΔL*; {k:g} times it: {k * flicker:.3f} ΔL*, under the floor of "
        f"{clip_check.FLICKER_FLOOR:g} ΔL* (one just-noticeable step), which is the limit then",
    ]
    stale = []
    if abs(clip_check.MEASURED_JITTER_MAX - round(jitter, 4)) > 1e-9:
        stale.append(f"MEASURED_JITTER_MAX = {jitter:.4f} (is {clip_check.MEASURED_JITTER_MAX})")
    if abs(clip_check.MEASURED_FLICKER_MAX - round(flicker, 3)) > 1e-9:
        stale.append(f"MEASURED_FLICKER_MAX = {flicker:.3f} (is {clip_check.MEASURED_FLICKER_MAX})")
    if stale:
        lines.append("- models/clip_check.py is not this calibration: " + ", ".join(stale))
    return lines


def check_clips(source: Path, checker: ClipChecker) -> None:
    photo = portraits()["grace_hopper"]
    clips: dict[str, bytes] = {}
    if source.is_dir():
        clips = {p.name: p.read_bytes() for p in sorted(source.glob("*.mp4"))}
    else:
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".mp4") and (f := tar.extractfile(member)) is not None:
                    clips[Path(member.name).name] = f.read()
    print(HEADER + " verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, mp4 in clips.items():
        print(row(name, checker.check(photo, mp4)), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", type=Path, help="check the MP4s in this folder or tar instead")
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)  # as bench/cpu_animator.py measures the animator: one core, one thread
    checker = ClipChecker()
    checker.setup()
    if args.clips:
        check_clips(args.clips, checker)
        return 0
    print(f"cores available: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f}\n")
    checks, _ = portrait_rows(checker, args.repeats)
    print()
    guard_rows(checker)
    print()
    for line in cost_lines(checker, checks) + calibration(checks):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
