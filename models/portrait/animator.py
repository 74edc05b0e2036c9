"""The CPU portrait animator: a real moving portrait from one photo, no GPU and no downloaded weights.

Not diffusion: it warps the photo itself. Stages: (1) check the motion text, (2) find faces, landmarks
and the person mask (mediapipe, see models/face.py), (3) plan each face's motion from what it shows
("auto", the default) or as the text says (models/auto_motion.py), (4) build the rig of basis fields
(rig.py), (5) per frame, mix the fields by the plans' curves and remap the photo (warp.py, eyes.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from models.auto_motion import plan_motion
from models.base import AnimationError, AnimationRequest, DrawnFrames, Frames, ProgressCallback, Stage
from models.clip_shape import HD_LONG_SIDE
from models.face import SHARED_MAX_FACES, Face, FaceAnalysis, FaceAnalyzer, chosen_faces
from models.motion import MotionError, SampledMotion, parse_motion
from models.motion_curves import CURVES_FPS
from models.portrait.mesh import (
    MAX_FACES,
    MeshRig,
    dense_rig,
    fit_photo,
    rig_of_analysis,
    rigged_faces,
    stored_rig_fits,
)
from models.portrait.rig import FACE_CHANNELS, Rig
from models.portrait.warp import Renderer
from models.quality import NO_FACE_MESSAGE

_log = logging.getLogger(__name__)

CALMER = 0.5  # how much of the planned movement the guard's calmer second try keeps


class PortraitAnimator:
    """Blinks, breathing, smiles and head turns by a dense warp driven by face landmarks."""

    name = "portrait"

    def __init__(
        self, max_side: int = HD_LONG_SIDE, max_faces: int = MAX_FACES, default_duration_s: float = 4.0
    ) -> None:
        self.max_side = max_side
        self.max_faces = max_faces
        self.default_duration_s = default_duration_s
        self._analyzer: FaceAnalyzer | None = None

    def setup(self) -> None:
        """Load the mediapipe graphs once per process."""
        if self._analyzer is None:
            # It reads as many faces as the clip check would (which reuses this reading); it rigs the
            # largest max_faces of them.
            self._analyzer = FaceAnalyzer(max_faces=max(self.max_faces, SHARED_MAX_FACES))
            self._analyzer.setup()

    def animate(self, photo: Image.Image, request: AnimationRequest, progress: ProgressCallback) -> Frames:
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        progress(Stage.ANALYZING, 0.0, "reading the face")
        recorded = request.curves  # recorded curves are the motion: the text is not read
        try:
            if recorded is None:
                parse_motion(request.motion, request.seed)  # bad text fails before any face work
        except MotionError as e:
            raise AnimationError("bad_motion", str(e)) from e
        self.setup()
        assert self._analyzer is not None
        rgb = np.asarray(fit_photo(photo, request.render_size(photo.size), self.max_side))
        h, w = rgb.shape[:2]
        # The mesh is the rig the browser's live view draws (the photo check's rig of this same photo);
        # every frame is rendered from it.
        analysis = self._analyzer.analyze(rgb)
        stored = _stored_rig(request, rgb, analysis, self.max_faces)
        if request.rig is not None:
            _log.info("rig: %s", "the photo check's, kept" if stored else "built (the kept one does not fit)")
        found = stored or rig_of_analysis(rgb, analysis, self.max_faces)
        if found is None:
            raise AnimationError("no_face", NO_FACE_MESSAGE)
        mesh, faces = found
        moving = chosen_faces([f.box for f in faces], w, h, request.faces)
        if not any(moving):
            _log.warning("none of the chosen faces was found again: every face keeps still")
        rig = dense_rig(mesh)
        motion: SampledMotion | Sequence[SampledMotion]
        if recorded is not None:  # the samples, one frame each, every face alike; then back to the first
            fps, motion = CURVES_FPS, recorded
            asked = round(fps * request.duration_s) if request.duration_s else 0
            n = max(recorded.samples, asked)
        else:
            fps = request.fps
            n = request.frames or max(1, round(fps * (request.duration_s or self.default_duration_s)))
            seed = request.seed or 0
            motion = plan_motion(rgb, request.motion, seed, faces=faces, duration_s=n / fps, fps=fps).plans
        coeffs, eyes = plan_to_channels(motion, rig, n, fps, moving)
        if request.calmer:  # the guard's second try: every movement halved, blinks kept
            coeffs *= CALMER
            eyes = [[(blink, gx * CALMER, gy * CALMER) for blink, gx, gy in frame] for frame in eyes]
        renderer = Renderer(rig, rgb)
        coeffs = renderer.prepare_clip(coeffs)  # the fold guard for every frame at once, where it moves
        seconds[Stage.ANALYZING.value] = time.perf_counter() - t0
        rigged = f"{len(faces)} face{'s' if len(faces) > 1 else ''}"
        progress(Stage.ANALYZING, 1.0, rigged + (", the photo check's rig" if stored else ""))

        def draw(i: int, out: np.ndarray) -> None:
            renderer.render(coeffs[i], eyes[i], out=out, prepared=True)
            progress(Stage.ANIMATING, (i + 1) / n, f"{i + 1}/{n}")

        # Every curve starts and ends at rest (a recording's last half second eases back), so the clip
        # loops; a recording whose face channels are all zero is a face the visitor chose to keep still.
        # A recording is rendered sample by sample: its jumps are the visitor's own, not jitter.
        still = (recorded is not None and recorded.face_still) or not any(moving)
        return Frames(  # drawn as the encoder takes them (render_clip): never all held at once
            frames=DrawnFrames(n, h, w, draw),
            fps=fps,
            stage_seconds=seconds,
            moves=not still,
            loops=True,
            steady=recorded is None,
            photo_analysis=analysis,
        )


def _stored_rig(
    request: AnimationRequest, rgb: np.ndarray, analysis: FaceAnalysis, max_faces: int
) -> tuple[MeshRig, list[Face]] | None:
    """The photo check's rig from the request, with the faces it rigs, when it is this photo's rig at this
    size (models.portrait.mesh.stored_rig_fits); None otherwise, and the rig is built here."""
    if request.rig is None:
        return None
    faces = rigged_faces(analysis, max_faces)
    try:
        mesh = MeshRig.from_json(request.rig)
    except (ValueError, KeyError, TypeError):
        return None
    return (mesh, faces) if faces and stored_rig_fits(mesh, rgb, faces) else None


def plan_to_channels(
    plans: SampledMotion | Sequence[SampledMotion],
    rig: Rig,
    n: int,
    fps: float,
    moving: Sequence[bool] | None = None,
) -> tuple[np.ndarray, list[list[tuple[float, float, float]]]]:
    """Per-frame basis coefficients (n, C) and per-frame, per-face eye states (blink, gaze_x, gaze_y).

    Face i follows plans[i] (the last plan for faces beyond them; one plan serves every face). Each face
    also samples its own variant, so people in one photo don't move in lockstep (a MotionPlan's variant;
    a recorded motion ignores it, and every face follows the recording).

    `moving[i]` False keeps face i still: no channel, no blink, eyes as in the photo. Breathing stretches
    every person at once, so it is off unless every rigged face moves (the live view does the same).
    """
    per_face = tuple(plans) if isinstance(plans, Sequence) else (plans,)
    if not per_face:
        raise ValueError("need at least one motion plan")
    coeffs = np.zeros((n, rig.channels), np.float32)
    eye_curves = []
    moves = list(moving) if moving is not None else [True] * len(rig.faces)
    for index, face in enumerate(rig.faces):
        if not moves[index]:
            eye_curves.append(np.zeros((n, 3), np.float32))
            continue
        curves = per_face[min(index, len(per_face) - 1)].sample(n, fps, variant=index)
        for j, name in enumerate(FACE_CHANNELS):
            coeffs[:, face.first_channel + j] = curves[name]
        if index == 0 and all(moves):
            coeffs[:, rig.breath_channel] = curves["breath"]
        eye_curves.append(np.stack([curves["blink"], curves["gaze_x"], curves["gaze_y"]], axis=1))
    eyes = [[(float(ec[i, 0]), float(ec[i, 1]), float(ec[i, 2])) for ec in eye_curves] for i in range(n)]
    return coeffs, eyes
