"""The animator contract shared by every animator and its callers (worker, CLI, tests, benchmarks).

Like cog's predictor: `setup()` once per process, `animate()` per job. Progress and cancel travel
through one callback: the caller's callback raises `Canceled` when the job was canceled, so an
animator only has to report progress between its steps to be cancelable within one step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from models.clip_shape import HD, UHD, uhd_size
from models.motion_curves import RecordedMotion

if TYPE_CHECKING:
    from models.face import FaceAnalysis


class Stage(str, Enum):
    """Stages of one job, in order. Their values are what the API and the page show."""

    QUEUED = "queued"
    ANALYZING = "analyzing"  # reading the photo: face analysis or vision encoding
    ANIMATING = "animating"  # denoising steps or warp rendering
    DECODING = "decoding"  # VAE decode
    POSTPROCESSING = "postprocessing"  # colour consistency, frame rate
    ENCODING = "encoding"  # ffmpeg
    CHECKING = "checking"  # the clip check: likeness, steadiness, life (models.clip_check)
    STORING = "storing"  # upload to the object store
    DONE = "done"


# progress(stage, fraction_of_stage_done, detail) -> None; raises Canceled if the job was canceled.
ProgressCallback = Callable[[Stage, float, str], None]


def no_progress(stage: Stage, fraction: float, detail: str = "") -> None:
    """A progress callback for callers that do not track progress."""


class Canceled(Exception):
    """Raised (by the caller's progress callback) to stop an animation between steps."""


class AnimationError(Exception):
    """A job-level failure with a stable error code the API can show (e.g. no_face, bad_motion)."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class AnimatorUnavailable(Exception):
    """The animator cannot be set up (model missing, gated, wrong kind, does not fit in memory).

    The message names the model and says what to do; a worker that gets it at start exits non-zero
    before it takes any job."""


FaceBox = tuple[float, float, float, float]  # x, y, w, h as fractions of the photo


@dataclass(frozen=True)
class AnimationRequest:
    """What the visitor asked for. None means "the animator's / model family's default"."""

    motion: str | None = None  # a preset name or short text such as "look left and smile"
    seed: int | None = None
    frames: int | None = None
    size: tuple[int, int] | None = None  # (width, height)
    steps: int | None = None
    fps: int = 24  # output frame rate
    # The clip's length, CLIP_MIN_S to CLIP_MAX_S (None: the animator's default, 4 s). The portrait
    # animator fills it (a longer clip gets more happening, models.motion); a diffusion family keeps its
    # own length and says so (Frames.note).
    duration_s: float | None = None
    # HD (the animator's own size: the portrait animator's long side at most HD_LONG_SIDE) or UHD, "4k": the
    # photo within 3840x2160 (uhd_size), never enlarged. An explicit `size` wins over it; a diffusion
    # family keeps its own size.
    resolution: str = HD
    # Curves recorded in the live view: then they are the motion (`motion` is not read) and the clip has
    # one frame per sample at 24 fps; the diffusion animator reads them as a plan (words and strength).
    curves: RecordedMotion | None = None
    # The clip guard's second try (models.guard): the same motion, smaller (portrait: half the movement;
    # SVD: half the motion bucket; text-conditioned models: told to move slowly and subtly).
    calmer: bool = False
    # The photo check's rig of this very photo (models.portrait.mesh MeshRig JSON), kept in the object
    # store: an animator that rigs a photo renders from it when it fits (same size, same faces) instead of
    # building its own; any other animator ignores it.
    rig: Mapping[str, Any] | None = None
    # The faces to move, as boxes (x, y, w, h, fractions of the photo) the photo check found them at; the
    # portrait animator matches its own faces to them by overlap and keeps every other face still. None:
    # every face it can move. Animators that move the whole picture never get one (refused at submit).
    faces: tuple[FaceBox, ...] | None = None

    def render_size(self, photo_size: tuple[int, int]) -> tuple[int, int] | None:
        """The size asked of an animator that renders at the photo's own size: `size` when given, the 4K
        box of the photo for 4K, else None (the animator's own HD size)."""
        return self.size or (uhd_size(photo_size) if self.resolution == UHD else None)


class DrawnFrames:
    """Frames drawn on demand, in order: `draw(i, out)` draws frame i into `out`, a uint8 (H, W, 3) array.
    The portrait animator hands these on, and render_clip gives each to the encoder as it is drawn into
    one reused buffer (`each`), so a clip is never held whole in memory and, where a second core is free,
    x264 encodes one frame while the next is drawn. Anything else may treat it as the (T, H, W, 3) array
    it stands for: len, shape, dtype, one frame by index, and np.asarray, which draws them all."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, count: int, height: int, width: int, draw: Callable[[int, np.ndarray], None]) -> None:
        self.shape = (count, height, width, 3)
        self._draw = draw
        self.seconds = 0.0  # spent drawing, so far

    def __len__(self) -> int:
        return self.shape[0]

    def _drawn(self, index: int, out: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        self._draw(index, out)
        self.seconds += time.perf_counter() - t0
        return out

    def each(self, out: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Every frame in order, drawn when asked for, into `out` when given (then each is gone once the
        next is asked for), else into a new array each."""
        for i in range(len(self)):
            yield self._drawn(i, out if out is not None else np.empty(self.shape[1:], np.uint8))

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.each()

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, int | np.integer):
            return self._drawn(range(len(self))[index], np.empty(self.shape[1:], np.uint8))
        return np.asarray(self)[index]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        frames = np.empty(self.shape, np.uint8)
        for i in range(len(self)):
            self._drawn(i, frames[i])
        return frames if dtype is None else frames.astype(dtype)


@dataclass
class Frames:
    """Raw animator output: uint8 RGB frames (T, H, W, 3) at `fps`, as an array or drawn on demand
    (DrawnFrames).

    What an animator hands on, and who gets what:
    - An animator that can make 4K or 10 s clips (portrait, push-in) hands on DrawnFrames: a 4K, 10 s
      clip as one array would be 240 × 3840 × 2160 × 3 bytes, about 6 GB. render_clip gives each frame
      to the encoder as it is drawn, into one reused buffer, so at most one frame is held.
    - A diffusion family hands on its decoded array: it keeps its own length and size (at most about
      5 s at 1024 px), and says so in `note` when more was asked.
    - Frame interpolation (frames at another rate than the request's) and a plug-in's post-processing
      get the whole array (np.asarray draws drawn frames all at once): only families' short clips
      reach them.
    - The clip check reads the encoded MP4, never these: sampled frames, decoded and made small."""

    frames: np.ndarray | DrawnFrames
    fps: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # What the clip check may hold the clip to: `moves` False exempts it from "life" (a push-in, or faces
    # the visitor chose to keep still); `loops` True: the last frame returns to the first.
    moves: bool = True
    loops: bool = False
    # False: the motion's own steps are what was asked for (a visitor's recording, rendered sample by
    # sample), so the clip check reports jitter but does not judge it.
    steady: bool = True
    # The animator's own reading of the photo (faces and person mask, at the size it rendered), when it
    # made one: the clip check reuses it rather than read the photo again.
    photo_analysis: FaceAnalysis | None = None
    # What the visitor should know about how the clip differs from the request, in words: a diffusion
    # family that keeps its own length when a longer clip was asked of it. The job shows it (video.note).
    note: str | None = None

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            got = f"{self.frames.dtype} {self.frames.shape}"
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got {got}")


@dataclass
class Clip:
    """An encoded clip ready to store."""

    mp4: bytes
    poster_jpeg: bytes
    width: int
    height: int
    fps: float
    frame_count: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    moves: bool = True  # as Frames says
    loops: bool = False
    steady: bool = True
    photo_analysis: FaceAnalysis | None = None  # as Frames says
    note: str | None = None  # as Frames says
    animator: str = ""  # the name of the animator that made it

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps


@runtime_checkable
class Animator(Protocol):
    """Everything the worker needs from an animator. One may also state `time_limit_s`, the seconds one
    clip may take (the diffusion animator's depends on the model family); the worker's limits follow it."""

    name: str

    def setup(self) -> None:
        """Load weights / models. Called once per process, before the first job."""

    def animate(self, photo: Image.Image, request: AnimationRequest, progress: ProgressCallback) -> Frames:
        """Animate an upright RGB photo. Report progress between steps; let Canceled propagate."""
        ...
