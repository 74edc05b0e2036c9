"""The animator contract shared by every animator and its callers (worker, CLI, tests, benchmarks).

Like cog's predictor: `setup()` once per process, `animate()` per job. Progress and cancel travel
through one callback: the caller's callback raises `Canceled` when the job was canceled, so an
animator only has to report progress between its steps to be cancelable within one step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from PIL import Image

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


@dataclass(frozen=True)
class AnimationRequest:
    """What the visitor asked for. None means "the animator's / model family's default"."""

    motion: str | None = None  # a preset name or short text such as "look left and smile"
    seed: int | None = None
    frames: int | None = None
    size: tuple[int, int] | None = None  # (width, height)
    steps: int | None = None
    fps: int = 24  # output frame rate
    duration_s: float | None = None  # output length; 3-5 s
    # Curves recorded in the live view: then they are the motion (`motion` is not read) and the clip has
    # one frame per sample at 24 fps; the diffusion animator reads them as a plan (words and strength).
    curves: RecordedMotion | None = None
    # The clip guard's second try (models.guard): the same motion, smaller (portrait: half the movement;
    # SVD: half the motion bucket; text-conditioned models: told to move slowly and subtly).
    calmer: bool = False


@dataclass
class Frames:
    """Raw animator output: uint8 RGB frames (T, H, W, 3) at `fps`."""

    frames: np.ndarray
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
