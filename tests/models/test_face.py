"""Face analysis on real portraits: colour, greyscale, sepia, small, several faces, none."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from models.face import LEFT_IRIS, RIGHT_IRIS, Face, FaceAnalyzer, detect_face_box


@pytest.mark.parametrize(
    "fixture",
    ["grace_hopper", "astronaut", "grey_portrait", "sepia_portrait", "small_portrait", "small_astronaut"],
)
def test_finds_one_face_with_478_points(fixture: str, request, face_analyzer: FaceAnalyzer) -> None:
    photo: Image.Image = request.getfixturevalue(fixture)
    result = face_analyzer.analyze(photo)
    assert len(result.faces) == 1
    face = result.faces[0]
    assert face.points.shape == (478, 3)
    w, h = photo.size
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert 0.2 * h < face.size < 0.8 * h
    yaw, pitch, roll = face.pose()
    assert abs(yaw) < 15 and abs(pitch) < 15 and abs(roll) < 10  # both portraits face the camera
    assert min(face.eye_openness()) > 0.15  # eyes open
    assert result.mask is not None and result.mask.shape == (h, w)


def test_landmarks_sit_on_the_face(grace_hopper: Image.Image, face_analyzer: FaceAnalyzer) -> None:
    face = face_analyzer.analyze(grace_hopper).faces[0]
    p = face.points
    # Eyes above the nose tip above the mouth above the chin; the subject's right eye on the picture's left.
    assert p[159, 1] < p[1, 1] < p[13, 1] < p[152, 1]
    assert p[468, 0] < p[1, 0] < p[473, 0]
    # Iris centres lie inside their eye corners.
    assert min(p[33, 0], p[133, 0]) < p[468, 0] < max(p[33, 0], p[133, 0])


def test_person_mask_separates_person_from_background(grace_hopper: Image.Image, face_analyzer) -> None:
    result = face_analyzer.analyze(grace_hopper)
    mask = result.mask
    x0, y0, x1, y1 = (int(v) for v in result.faces[0].box)
    assert mask[y0:y1, x0:x1].mean() > 0.8
    assert mask[:30, :30].mean() < 0.2  # the flag in the top-left corner


def test_several_faces_largest_first(group_photo: Image.Image, face_analyzer: FaceAnalyzer) -> None:
    faces = face_analyzer.analyze(group_photo).faces
    assert len(faces) == 3
    sizes = [f.size for f in faces]
    assert sizes == sorted(sizes, reverse=True)
    centres = sorted(f.points[1, 0] for f in faces)
    assert centres[0] < 230 < centres[1] < 460 < centres[2]  # one per person


def test_the_face_box_alone_is_the_largest_face(
    group_photo: Image.Image, no_face_photo: Image.Image, face_analyzer: FaceAnalyzer
) -> None:
    """detect_face_box (the detector without mesh and mask) finds the face the analyzer ranks first."""
    box = detect_face_box(group_photo)
    assert box is not None
    x0, y0, x1, y1 = face_analyzer.analyze(group_photo, mask=False).faces[0].box
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    assert x0 < cx < x1 and y0 < cy < y1
    assert detect_face_box(no_face_photo) is None


def test_max_faces_limits_the_count(group_photo: Image.Image) -> None:
    assert len(FaceAnalyzer(max_faces=2).analyze(group_photo, mask=False).faces) == 2


def test_no_face(no_face_photo: Image.Image, face_analyzer: FaceAnalyzer) -> None:
    result = face_analyzer.analyze(no_face_photo)
    assert result.faces == []


def test_large_photo_coordinates_are_in_full_resolution(astronaut: Image.Image, face_analyzer) -> None:
    big = astronaut.resize((1600, 1600))
    small_face = face_analyzer.analyze(astronaut, mask=False).faces[0]
    big_face = face_analyzer.analyze(big, mask=False).faces[0]
    assert np.allclose(big_face.points[1, :2] / 1600, small_face.points[1, :2] / 256, atol=0.02)


def test_numpy_greyscale_and_rgba_inputs(grace_hopper: Image.Image, face_analyzer) -> None:
    grey = np.asarray(grace_hopper.convert("L"))
    rgba = np.asarray(grace_hopper.convert("RGBA"))
    assert len(face_analyzer.analyze(grey, mask=False).faces) == 1
    assert len(face_analyzer.analyze(rgba, mask=False).faces) == 1


def test_safe_from_several_threads(grace_hopper: Image.Image, astronaut: Image.Image) -> None:
    analyzer = FaceAnalyzer()
    expected = {id(p): analyzer.analyze(p, mask=False).faces[0].points for p in (grace_hopper, astronaut)}
    errors: list[str] = []

    def work(photo: Image.Image) -> None:
        for _ in range(3):
            pts = analyzer.analyze(photo, mask=False).faces[0].points
            if not np.allclose(pts, expected[id(photo)], atol=1e-3):
                errors.append("different landmarks under concurrency")

    threads = [threading.Thread(target=work, args=(p,)) for p in (grace_hopper, astronaut) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _rotated_in_plane(face: Face, degrees: float) -> Face:
    a = np.radians(degrees)
    r = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    centre = face.points.mean(axis=0)
    return Face(points=((face.points - centre) @ r.T + centre).astype(np.float32), score=face.score)


def test_expression_readings(grace_hopper: Image.Image, astronaut: Image.Image, face_analyzer) -> None:
    hopper = face_analyzer.analyze(grace_hopper, mask=False).faces[0]
    collins = face_analyzer.analyze(astronaut, mask=False).faces[0]
    # Grace Hopper: closed mouth, a hint of a smile. Eileen Collins: a broad smile showing her teeth.
    assert hopper.smile() < 0.35 < 0.7 < collins.smile() <= 1
    assert hopper.mouth_open() < 0.05 < 0.1 < collins.mouth_open() < 0.3
    for face in (hopper, collins):
        gx, gy = face.gaze()
        assert abs(gx) < 0.15 and abs(gy) < 0.15  # both look at the camera
        # The readings are the face's own: tilting the picture does not change them.
        tilted = _rotated_in_plane(face, 12)
        assert tilted.smile() == pytest.approx(face.smile(), abs=0.02)
        assert tilted.mouth_open() == pytest.approx(face.mouth_open(), abs=0.01)
        assert tilted.gaze() == pytest.approx(face.gaze(), abs=0.02)
        assert tilted.pose()[2] == pytest.approx(face.pose()[2] + 12, abs=1.0)


@pytest.mark.parametrize(("dx", "dy"), [(0.4, 0.0), (-0.4, 0.0), (0.0, 0.3), (0.0, -0.3)])
def test_gaze_follows_the_irises(dx: float, dy: float, astronaut: Image.Image, face_analyzer) -> None:
    """Irises moved inside their eyes (by a share of each eye's half-width) read as that gaze."""
    face = face_analyzer.analyze(astronaut, mask=False).faces[0]
    moved = face.points.copy()
    for iris, (a, b) in ((RIGHT_IRIS, (33, 133)), (LEFT_IRIS, (362, 263))):
        half = np.linalg.norm(moved[b, :2] - moved[a, :2]) / 2
        moved[list(iris), 0] += dx * half
        moved[list(iris), 1] += dy * half
    before, after = face.gaze(), Face(points=moved, score=face.score).gaze()
    assert after[0] - before[0] == pytest.approx(dx, abs=0.06)  # > 0: toward the picture's right
    assert after[1] - before[1] == pytest.approx(dy, abs=0.06)  # > 0: down
