"""The rig's mesh form (models/portrait/mesh.py): what the browser's live view and the CPU animator read.

Measured on real portraits at the animator's own render size (the rig is built where the clip is)."""

from __future__ import annotations

import base64
import gzip
import json

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from models.face import FaceAnalyzer
from models.motion import CHANNEL_LIMITS
from models.portrait.mesh import (
    TOLERANCE_PX,
    MeshRig,
    dense_rig,
    mesh_rig,
    rig_of_photo,
)
from models.portrait.rig import build_rig
from models.portrait.warp import Renderer
from tests.rig_frames import min_jacobian, render_values

VALUES = {"yaw": 10.0, "pitch": -5.0, "roll": 4.0, "smile": 0.8, "brow": 0.5, "blink": 0.6, "gaze_x": 0.5}


@pytest.fixture(scope="module")
def big_hopper() -> Image.Image:
    """Grace Hopper at full sample size (512×600): the rig's size and fidelity at a real photo's scale."""
    from matplotlib import cbook

    return Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")


def _rig(photo: Image.Image, analyzer: FaceAnalyzer):
    rgb = np.asarray(photo.convert("RGB"))
    analysis = analyzer.analyze(rgb)
    dense = build_rig(rgb.shape[1], rgb.shape[0], analysis.faces, analysis.mask)
    return rgb, dense, mesh_rig(dense, analysis.faces)


@pytest.mark.parametrize("fixture", ["big_hopper", "astronaut", "group_photo"])
def test_the_mesh_moves_like_the_dense_fields(fixture: str, request, face_analyzer: FaceAnalyzer) -> None:
    """Every channel, at its full range, moves every point of the photo within the tolerance (plus the
    int16 rounding) of the dense fields the rig is built from."""
    rgb, dense, mesh = _rig(request.getfixturevalue(fixture), face_analyzer)
    from_mesh = dense_rig(mesh)
    assert from_mesh.basis.shape == dense.basis.shape
    hf, wf = dense.field_shape
    gap = np.linalg.norm((from_mesh.basis - dense.basis).reshape(dense.channels, 2, hf * wf), axis=1)
    reach = np.array([max(map(abs, CHANNEL_LIMITS[ch])) for ch, _ in mesh.rows])
    rounding = mesh.scales * reach * 2  # half a step per component, at full range, both components
    assert (gap.max(axis=1) * reach <= TOLERANCE_PX + rounding + 1e-3).all()
    # ... and the mesh is far coarser than the grid: that is what makes it travel.
    assert len(mesh.vertices) < 0.2 * hf * wf


def test_the_rig_travels_in_tens_of_kilobytes(big_hopper: Image.Image, face_analyzer: FaceAnalyzer) -> None:
    _, _, mesh = _rig(big_hopper, face_analyzer)
    raw = json.dumps(mesh.to_json()).encode()
    assert 10_000 < len(gzip.compress(raw)) < 100_000
    assert len(raw) < 150_000
    photo_bytes = np.asarray(big_hopper).nbytes
    assert len(raw) < photo_bytes / 5


def test_json_round_trip_is_exact(astronaut: Image.Image, face_analyzer: FaceAnalyzer) -> None:
    _, _, mesh = _rig(astronaut, face_analyzer)
    data = json.loads(json.dumps(mesh.to_json()))
    assert data["format"] == "vivify-rig" and data["version"] == 2
    assert [r["channel"] for r in data["rows"]] == ["yaw", "pitch", "roll", "smile", "brow", "breath"]
    assert data["limits"]["yaw"] == [-15.0, 15.0]
    again = MeshRig.from_json(data)
    assert np.array_equal(again.vertices, mesh.vertices)
    assert np.array_equal(again.triangles, mesh.triangles)
    assert np.array_equal(again.quantised, mesh.quantised)
    assert again.rows == mesh.rows and np.array_equal(again.scales, mesh.scales)
    # The renderer gets the very same fields and eyes from the JSON as from the rig in memory.
    a, b = dense_rig(mesh), dense_rig(again)
    assert np.array_equal(a.basis, b.basis) and a.roi == b.roi
    for fa, fb in zip(a.faces, b.faces, strict=True):
        for ea, eb in zip(fa.eyes, fb.eyes, strict=True):
            assert np.array_equal(ea.origin, eb.origin) and np.array_equal(ea.upper, eb.upper)
            assert ea.box == eb.box and ea.skin == eb.skin


def test_the_mesh_covers_the_photo_and_its_ring_stays_still(
    astronaut: Image.Image, face_analyzer: FaceAnalyzer
) -> None:
    _, _, mesh = _rig(astronaut, face_analyzer)
    v = mesh.vertices
    outside = (v[:, 0] < 0) | (v[:, 1] < 0) | (v[:, 0] > mesh.width) | (v[:, 1] > mesh.height)
    assert outside.sum() >= 16 and not mesh.quantised[:, outside].any()
    a, b, c = (v[mesh.triangles[:, j]] for j in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    assert (cross > 0).all()  # one winding, no degenerate triangle
    total = float(cross.sum() / 2)
    ring = (v[outside, 0].max() - v[outside, 0].min()) * (v[outside, 1].max() - v[outside, 1].min())
    assert total == pytest.approx(ring, rel=1e-4)  # the triangles tile the ring's rectangle exactly


def test_the_frame_from_the_mesh_matches_the_frame_from_the_fields(
    big_hopper: Image.Image, face_analyzer: FaceAnalyzer
) -> None:
    rgb, dense, mesh = _rig(big_hopper, face_analyzer)
    values = {**VALUES, "roll": 1.0}  # a pose neither fold guard scales: this compares the fields alone
    coeffs = np.array([values.get(ch, 0.0) for ch, _ in mesh.rows], np.float32)
    assert dense_rig(mesh).fold_scale(coeffs) == 1.0  # type: ignore[misc]
    eyes = [(values["blink"], values["gaze_x"], 0.0)]
    reference = Renderer(dense, rgb).render(coeffs, eyes)
    frame = render_values(mesh, rgb, values)
    x0, y0, x1, y1 = (int(round(t)) for t in mesh.faces[0].box)
    face, ref = frame[y0:y1, x0:x1], reference[y0:y1, x0:x1]
    assert structural_similarity(face, ref, channel_axis=2) > 0.97
    assert structural_similarity(face, rgb[y0:y1, x0:x1], channel_axis=2) < 0.9  # it did move


def test_rig_of_photo_is_built_at_the_animators_size(face_analyzer: FaceAnalyzer, big_hopper) -> None:
    large = big_hopper.resize((1024, 1200), Image.Resampling.LANCZOS)
    mesh = rig_of_photo(large, max_side=600, analyzer=face_analyzer)
    assert mesh is not None and (mesh.width, mesh.height) == (512, 600)
    assert rig_of_photo(Image.new("RGB", (300, 300), (90, 120, 160)), analyzer=face_analyzer) is None


def test_a_broken_rig_is_refused(astronaut: Image.Image, face_analyzer: FaceAnalyzer) -> None:
    _, _, mesh = _rig(astronaut, face_analyzer)
    good = mesh.to_json()
    for broken, words in (
        ({**good, "version": 1}, "version"),  # the version before the constants travelled
        ({**good, "vertices": "not base64!"}, None),
        (
            {**good, "triangles": base64.b64encode(np.array([0, 1, 60000], "<u2").tobytes()).decode()},
            "vertex",
        ),
        ({**good, "displacements": good["displacements"][:-8]}, None),
    ):
        with pytest.raises(ValueError, match=words):
            MeshRig.from_json(broken)


def test_the_clip_is_rendered_from_the_rig_the_photo_check_answers(
    big_hopper: Image.Image, face_analyzer: FaceAnalyzer
) -> None:
    """One source of truth: the rig travels as JSON to the browser, and the animator's frame at the same
    channel values is exactly the frame drawn from that JSON."""
    from models.base import AnimationRequest, Stage
    from models.motion_curves import parse_curves
    from models.portrait import PortraitAnimator

    def quiet(stage: Stage, fraction: float, detail: str = "") -> None:
        pass

    sent = rig_of_photo(big_hopper, max_side=1080)  # what the photo check answers (shared analyzer)
    assert sent is not None
    travelled = MeshRig.from_json(json.loads(json.dumps(sent.to_json())))
    # Values a float32 holds exactly: the worker's curves are float32, render_values takes Python floats.
    held = {"yaw": -9.0, "pitch": 4.0, "smile": 0.75, "brow": 0.25, "blink": 0.5, "gaze_x": -0.625}
    curves = parse_curves(json.dumps({"fps": 24, "channels": {k: [v] * 72 for k, v in held.items()}}))
    frames = PortraitAnimator().animate(big_hopper, AnimationRequest(curves=curves), quiet).frames
    expected = render_values(travelled, np.asarray(big_hopper), held)
    assert np.array_equal(frames[30], expected)
    assert not np.array_equal(expected, np.asarray(big_hopper))


@pytest.mark.parametrize("fixture", ["big_hopper", "astronaut"])
def test_no_pose_within_the_limits_folds_the_warp(fixture: str, request, face_analyzer: FaceAnalyzer) -> None:
    """At every corner of the channels' ranges the mesh's fold guard keeps the drawn warp fold-free, and
    it leaves ordinary poses alone."""
    import itertools

    from models.portrait.mesh import FoldGuard

    rgb, _, mesh = _rig(request.getfixturevalue(fixture), face_analyzer)
    rig = dense_rig(mesh)
    renderer = Renderer(rig, rgb)
    assert isinstance(rig.fold_scale, FoldGuard)
    for yaw, pitch, roll in itertools.product((-15, 15), (-10, 10), (-8, 8)):
        values = {"yaw": yaw, "pitch": pitch, "roll": roll, "smile": 1.0, "brow": 1.0, "breath": 1.0}
        coeffs = np.array([values[ch] for ch, _ in mesh.rows], np.float32)
        assert min_jacobian(renderer.rig.k, renderer._inverse(coeffs)) > 0.2, values
    gentle = np.array([{"yaw": 4, "pitch": -2, "roll": 1, "smile": 0.5}.get(ch, 0.0) for ch, _ in mesh.rows])
    assert rig.fold_scale(gentle.astype(np.float32)) == 1.0


def test_fold_guard_for_a_whole_clip_is_the_guard_frame_by_frame(
    big_hopper, face_analyzer: FaceAnalyzer
) -> None:
    """prepare_clip scales every frame in one pass exactly as the guard does one frame at a time, including
    poses past the limits that it must scale down, and a guarded frame is drawn as an unguarded one is."""
    import itertools

    rgb, _, mesh = _rig(big_hopper, face_analyzer)
    rig = dense_rig(mesh)
    poses = [
        {"yaw": yaw, "pitch": pitch, "roll": roll, "smile": 1.0}
        for yaw, pitch, roll in itertools.product((-40, 0, 15), (-30, 0, 10), (-35, 0, 8))
    ]
    coeffs = np.array([[p.get(ch, 0.0) for ch, _ in mesh.rows] for p in poses], np.float32)
    one_by_one = np.array([rig.fold_scale(c) for c in coeffs])  # type: ignore[misc]
    assert (one_by_one < 1.0).any() and (one_by_one == 1.0).any()  # both kinds of frame are here
    renderer = Renderer(rig, rgb)
    guarded = renderer.prepare_clip(coeffs)
    assert np.array_equal(guarded, (coeffs * one_by_one[:, None]).astype(np.float32))
    eyes = [(0.0, 0.0, 0.0)] * len(rig.faces)
    for i in (0, int(np.argmin(one_by_one))):
        assert np.array_equal(
            renderer.render(guarded[i], eyes, prepared=True), renderer.render(coeffs[i], eyes)
        )


def test_a_prepared_clip_draws_only_where_it_moves_and_the_same_frames(
    astronaut: Image.Image, face_analyzer: FaceAnalyzer
) -> None:
    """prepare_clip leaves the background no frame moves as the photo: fewer pixels sampled, the very
    same frames, drawn into one buffer frame after frame or into new arrays."""
    from models.auto_motion import plan_motion
    from models.portrait.animator import plan_to_channels

    rgb = np.asarray(astronaut)
    analysis = face_analyzer.analyze(rgb)
    rig = dense_rig(
        mesh_rig(build_rig(rgb.shape[1], rgb.shape[0], analysis.faces, analysis.mask), analysis.faces)
    )
    plans = plan_motion(rgb, "look-around", 2, faces=analysis.faces, duration_s=2.0, fps=24).plans
    coeffs, eyes = plan_to_channels(plans, rig, 48, 24)
    renderer = Renderer(rig, rgb)
    prepared = renderer.prepare_clip(coeffs)
    spans = renderer._spans
    assert (
        spans and sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in spans) < 0.9 * rgb.shape[0] * rgb.shape[1]
    )
    plain = Renderer(rig, rgb)
    buffer = np.empty_like(rgb)
    for i in range(0, 48, 5):
        expected = plain.render(prepared[i], eyes[i])
        assert np.array_equal(renderer.render(prepared[i], eyes[i], out=buffer, prepared=True), expected)
        assert np.array_equal(renderer.render(prepared[i], eyes[i], prepared=True), expected)
