"""The photo check shown at upload: a 0–100 score and plain-language tips.

Three things decide how good a clip from a photo can be: the face (found, big enough, in the frame,
facing the camera, eyes open, not covered), resolution and sharpness of the face, and the light on it
(exposure, clipped highlights/shadows, evenness between the two halves of the face).

Web-tier safe: no torch; mediapipe is loaded on first use and shared behind a lock (FaceAnalyzer), so
several request threads may call `check_photo` at once. About 20–40 ms for a 1024-px photo.
No face is not an error here (the diffusion animator can still animate); it lowers the score.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from models.face import (
    FACE_OVAL,
    MOVABLE_MAX_FACES,
    MOVABLE_MIN_FACE_PX,
    NOSE_TIP,
    Face,
    shared_analyzer,
)

CHECK_MAX_SIDE = 1024  # the check looks at a copy this size; enough for every measure here


def warm_up() -> None:
    """Load the face models now (about 0.6 s) so the first upload's check and motion plan are fast;
    call at web start. The planner (models.auto_motion) shares this analyzer."""
    shared_analyzer().setup()


def check_photo(image: Image.Image) -> dict:
    """A JSON-serialisable report: score, verdict, faces, face, sharpness, lighting, resolution, tips."""
    return check_photo_faces(image)[0]


def check_photo_faces(image: Image.Image, movable_max: int = MOVABLE_MAX_FACES) -> tuple[dict, list[dict]]:
    """check_photo's report, and every face found (largest first, as face_entries lists them)."""
    width, height = image.size
    small = image if image.mode in ("RGB", "L") else image.convert("RGB")
    if max(small.size) >= 2 * CHECK_MAX_SIDE:  # a fast box reduction first: a 12-MP photo in ~30 ms
        small = small.reduce(max(small.size) // CHECK_MAX_SIDE)
    small = small.convert("RGB")
    if max(small.size) > CHECK_MAX_SIDE:
        small = small.copy()
        small.thumbnail((CHECK_MAX_SIDE, CHECK_MAX_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    scale = width / small.width  # original pixels per checked pixel
    rgb = np.asarray(small)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    faces = shared_analyzer().analyze(rgb, mask=False).faces
    face = faces[0] if faces else None
    tips: list[str] = []

    face_part, face_score = _face_report(face, rgb.shape[1], rgb.shape[0], tips, several=len(faces) > 1)
    grey_shape = (grey.shape[0], grey.shape[1])
    region = _face_region(face, grey_shape) if face else _centre_region(grey_shape)
    sharp_part, sharp_score = _sharpness(grey, region, tips)
    light_part, light_score = _lighting(grey, region, face, tips)
    face_px = face.size * scale if face else 0.0
    res_part, res_score = _resolution(width, height, face_px, tips)

    parts = (face_score, sharp_score, res_score, light_score)
    mean = 0.4 * face_score + 0.2 * sharp_score + 0.15 * res_score + 0.25 * light_score
    # Half the weighted mean, half the weakest part: one bad thing (blur, dark) can't hide behind good ones.
    score = int(round(0.5 * mean + 0.5 * min(parts)))
    verdict = "good" if score >= 75 else "fair" if score >= 50 else "poor"
    if not tips:
        tips.append(
            "Looks great: clear, well-lit faces."
            if len(faces) > 1
            else "Looks great: a clear, well-lit face."
        )
    report = {
        "score": score,
        "verdict": verdict,
        "faces": len(faces),
        "face": face_part,
        "sharpness": sharp_part,
        "lighting": light_part,
        "resolution": res_part,
        "tips": tips,
    }
    return report, face_entries(faces, rgb.shape[1], rgb.shape[0], movable_max)


# The one wording of "no face", said by the photo check's tip, the refusal of a job (422 no_face), the
# page (app/web/catalogue.py) and `vivify animate` (the portrait animator's error) alike.
NO_FACE_TITLE = "We could not find a face in this photo."
NO_FACE_NEXT = "Use a photo where a face looks toward the camera, uncovered and well lit."
NO_FACE_MESSAGE = f"{NO_FACE_TITLE} {NO_FACE_NEXT}"


def face_entries(faces: list[Face], w: int, h: int, movable_max: int = MOVABLE_MAX_FACES) -> list[dict]:
    """Each face as the visitor picks it: its index (largest first), its box as fractions of the photo
    (x, y, w, h) and whether the portrait animator can move it (the largest `movable_max` of those wide
    enough, as models.portrait.mesh.rigged_faces picks them)."""
    entries, movable = [], 0
    for index, face in enumerate(faces):
        x0, y0, x1, y1 = face.box
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
        can_move = face.width >= MOVABLE_MIN_FACE_PX and movable < movable_max
        movable += can_move
        box = [x0 / w, y0 / h, max(0.0, x1 - x0) / w, max(0.0, y1 - y0) / h]
        entries.append({"index": index, "box": [round(v, 4) for v in box], "movable": bool(can_move)})
    return entries


def _face_report(
    face: Face | None, w: int, h: int, tips: list[str], several: bool = False
) -> tuple[dict, float]:
    if face is None:
        tips.append(NO_FACE_MESSAGE)
        return {"found": False}, 0.0
    oval = face.points[list(FACE_OVAL), :2]
    in_frame = float(np.mean((oval[:, 0] >= 0) & (oval[:, 0] < w) & (oval[:, 1] >= 0) & (oval[:, 1] < h)))
    size_ratio = face.size / h
    yaw, pitch, roll = face.pose()
    eyes = face.eye_openness()
    visibility = float(min(1.0, face.score / 0.85) * in_frame)
    score = 100.0
    if size_ratio < 0.12:
        score -= 40 if size_ratio < 0.06 else 20
        tips.append(
            "The faces are small in the picture: crop closer so the people fill more of the photo."
            if several
            else "The face is small in the picture: crop closer so the face fills about a third of the photo."
        )
    if in_frame < 0.97:
        score -= 30 + 60 * (0.97 - in_frame)
        tips.append(
            "Part of the largest face is outside the picture: use a photo with every face in the frame."
            if several
            else "Part of the face is outside the picture: use a photo with the whole face in the frame."
        )
    if abs(yaw) > 30 or abs(pitch) > 25:
        score -= 25
        tips.append(
            "The largest face is turned away: a photo where the faces look toward the camera animates best."
            if several
            else "The face is turned away: a photo looking toward the camera animates best."
        )
    if max(eyes) < 0.1:
        score -= 15
        tips.append(
            "The largest face's eyes look closed: a photo with open eyes makes blinks look natural."
            if several
            else "The eyes look closed: a photo with open eyes makes blinks look natural."
        )
    if face.score < 0.7:
        score -= 15
        tips.append(
            "The largest face is hard to see (covered, blurred or in shadow): clearer faces animate better."
            if several
            else "The face is hard to see (covered, blurred or in shadow): a clearer face animates better."
        )
    part = {
        "found": True,
        "size_ratio": round(float(size_ratio), 3),
        "box": [round(float(v) / w if i % 2 == 0 else float(v) / h, 3) for i, v in enumerate(face.box)],
        "in_frame": round(in_frame, 3),
        "visibility": round(visibility, 3),
        "confidence": round(float(face.score), 3),
        "pose": {"yaw": round(yaw, 1), "pitch": round(pitch, 1), "roll": round(roll, 1)},
        "eyes_open": round(float(max(eyes)), 3),
    }
    return part, max(0.0, score)


def _face_region(face: Face, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(face.points[list(FACE_OVAL), :2]).astype(np.int32), (1,))
    if mask.sum() < 16:
        return _centre_region(shape)
    return mask.astype(bool)


def _centre_region(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    mask = np.zeros(shape, bool)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
    return mask


def _sharpness(grey: np.ndarray, region: np.ndarray, tips: list[str]) -> tuple[dict, float]:
    ys, xs = np.nonzero(region)
    crop = grey[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    if crop.shape[0] > 256:  # compare faces at one scale; never enlarge (a small face IS less detailed)
        crop = cv2.resize(
            crop, (max(1, round(crop.shape[1] * 256 / crop.shape[0])), 256), interpolation=cv2.INTER_AREA
        )
    lap = float(cv2.Laplacian(crop, cv2.CV_64F).var())
    # Laplacian variance: ~20 is visibly soft, 150+ is crisp (measured on the sample portraits and blurs).
    score = float(
        np.clip(100 * (np.log10(max(lap, 1.0)) - np.log10(8)) / (np.log10(150) - np.log10(8)), 0, 100)
    )
    if score < 50:
        tips.append("The photo looks blurry: use a sharper, in-focus photo (hold the camera still).")
    return {"laplacian_variance": round(lap, 1), "score": round(score)}, score


def _lighting(grey: np.ndarray, region: np.ndarray, face: Face | None, tips: list[str]) -> tuple[dict, float]:
    values = grey[region].astype(np.float32) / 255.0
    exposure = float(values.mean())
    highlights = float(np.mean(values > 0.96))
    shadows = float(np.mean(values < 0.05))
    evenness = 1.0
    if face is not None:
        ys, xs = np.nonzero(region)
        nose_x = face.points[NOSE_TIP, 0]
        left, right = values[xs < nose_x], values[xs >= nose_x]
        if left.size > 8 and right.size > 8:
            lo, hi = sorted((float(left.mean()), float(right.mean())))
            evenness = lo / max(hi, 1e-3)
    score = 100.0
    if exposure < 0.25:
        score -= 50 * min(1.0, (0.25 - exposure) / 0.15) + 10
        tips.append("The face is dark: take the photo facing a window or a lamp.")
    elif exposure > 0.8:
        score -= 40 * min(1.0, (exposure - 0.8) / 0.15) + 10
        tips.append("The face is very bright (over-exposed): use softer light or a less bright photo.")
    if highlights > 0.05 or shadows > 0.10:
        score -= 20
        if exposure <= 0.8 and exposure >= 0.25:
            tips.append("Parts of the face are washed out or lost in shadow: soft, even light works best.")
    if evenness < 0.7:
        score -= 45 * min(1.0, (0.7 - evenness) / 0.3) + 5
        tips.append("One side of the face is much darker: turn toward the light so it falls evenly.")
    part = {
        "exposure": round(exposure, 3),
        "highlights_clipped": round(highlights, 3),
        "shadows_clipped": round(shadows, 3),
        "evenness": round(evenness, 3),
        "score": round(max(0.0, score)),
    }
    return part, max(0.0, score)


def _resolution(width: int, height: int, face_px: float, tips: list[str]) -> tuple[dict, float]:
    if face_px <= 0:
        score = float(np.clip(100 * min(width, height) / 720, 10, 100))
    else:
        score = float(np.clip(15 + 85 * np.log2(max(face_px, 1) / 40) / np.log2(256 / 40), 15, 100))
    if face_px and face_px < 100:
        tips.append("The face has few pixels: a larger or higher-resolution photo gives a sharper clip.")
    elif min(width, height) < 256:
        tips.append("The photo is small: a larger photo gives a sharper clip.")
    part = {"width": width, "height": height, "face_px": round(float(face_px)), "score": round(score)}
    return part, score
