"""The portrait rig as a small triangle mesh: the one form of the rig that the CPU animator renders from
and that the browser's live view draws (static/js/rig.js). See docs/rig.md for the JSON and the recipe
for one frame.

The dense basis fields of rig.py (one per channel, on a grid of ≤ 200 × 200) are what the rig *is*; the
mesh carries them compactly: a triangulation of the photo, dense where a field bends (mouth corners,
brows, the head's feathered edge) and coarse where nothing moves, and each channel's displacement at
every vertex. Between vertices a displacement is linear (piecewise-linear blend-shapes), which
`_refine` makes match the dense fields within `TOLERANCE_PX` at each channel's full range. Two motions
are not blend-shapes of positions, and travel as parameters instead:
- a blink is an occluding slide of the lid over the eye, and gaze moves the iris inside a fixed opening:
  both are per-pixel edits of where the photo is sampled (eyes.py), which the browser's fragment shader
  repeats from each eye's lid curves;
- a head turn is linear here only because the rig's angles are small (±15°): the fields are the
  first-order motion of a rotation about a pivot behind the face.

Displacements are stored as int16 with a scale per row, and the server renders from those quantised
values too, so the browser and the server read the very same numbers.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from models.clip_shape import HD_LONG_SIDE
from models.face import MOVABLE_MAX_FACES, MOVABLE_MIN_FACE_PX, Face, FaceAnalysis, FaceAnalyzer
from models.motion import CHANNEL_LIMITS, CHANNELS
from models.motion_curves import LOOP_SAMPLES
from models.portrait.eyes import GAZE_U, GAZE_V, KNOTS, LID_CLOSE, TAPER, EyeRig
from models.portrait.rig import FACE_CHANNELS, FIELD_MAX_SIDE, FaceRig, Rig, build_rig, roi_of

FORMAT, VERSION = "vivify-rig", 2
TOLERANCE_PX = 1.0  # largest gap (px) between the mesh's and the dense fields' motion, at full range
MIN_FACE_PX = MOVABLE_MIN_FACE_PX  # smaller faces are left still
MAX_FACES = MOVABLE_MAX_FACES  # the portrait animator's default: more people in one photo stay still
MIN_AREA_RATIO, FOLD_STEPS = 0.3, 12  # the fold guard (FoldGuard; the browser gets them in the rig JSON)
MIN_CELL = 2  # new vertices are at least this many grid steps apart within a round: fewer, better placed
MAX_ROUNDS = 24


@dataclass(frozen=True)
class MeshFace:
    box: tuple[float, float, float, float]  # image coordinates (pixel i's centre at i + 0.5)
    centre: tuple[float, float]
    width: float
    height: float
    eyes: tuple[EyeRig, ...]  # in image coordinates too (origin and box)


@dataclass
class MeshRig:
    width: int
    height: int
    vertices: np.ndarray  # (V, 2) float32, image coordinates; a ring outside the photo moves never
    triangles: np.ndarray  # (T, 3) int32
    rows: list[tuple[str, int | None]]  # (channel, face) per displacement row; face None: the picture
    scales: np.ndarray  # (R,) float32: pixels per int16 step of each row
    quantised: np.ndarray  # (R, V, 2) int16
    faces: list[MeshFace]

    @property
    def displacements(self) -> np.ndarray:
        """(R, V, 2) float32: forward pixels per unit of each row's channel, as the browser reads them."""
        return self.quantised.astype(np.float32) * self.scales[:, None, None]

    def to_json(self) -> dict[str, Any]:
        wide = len(self.vertices) > 65535
        return {
            "format": FORMAT,
            "version": VERSION,
            "width": self.width,
            "height": self.height,
            "vertices": _b64(self.vertices.astype("<f4")),
            "triangles": _b64(self.triangles.astype("<u4" if wide else "<u2")),
            "index_bytes": 4 if wide else 2,
            "rows": [
                {"channel": ch, "face": face, "scale": float(s)}
                for (ch, face), s in zip(self.rows, self.scales.tolist(), strict=True)
            ],
            "displacements": _b64(self.quantised.astype("<i2")),
            "faces": [_face_json(f) for f in self.faces],
            "limits": {k: list(v) for k, v in CHANNEL_LIMITS.items()},
            "channels": list(CHANNELS),
            "constants": browser_constants(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MeshRig:
        """The rig from its JSON; ValueError when it is not a well-formed rig of this version."""
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} version {VERSION}")
        width, height = int(data["width"]), int(data["height"])
        vertices = _unb64(data["vertices"], "<f4").reshape(-1, 2)
        index = "<u4" if data.get("index_bytes") == 4 else "<u2"
        triangles = _unb64(data["triangles"], index).astype(np.int32).reshape(-1, 3)
        rows = [(str(r["channel"]), None if r["face"] is None else int(r["face"])) for r in data["rows"]]
        scales = np.array([float(r["scale"]) for r in data["rows"]], np.float32)
        quantised = _unb64(data["displacements"], "<i2").reshape(len(rows), len(vertices), 2)
        if len(triangles) and (triangles.max() >= len(vertices) or triangles.min() < 0):
            raise ValueError("a triangle names a vertex the rig does not have")
        faces = [_face_from_json(f) for f in data["faces"]]
        return cls(width, height, vertices.astype(np.float32), triangles, rows, scales, quantised, faces)


def browser_constants() -> dict[str, float | int]:
    """The numbers the browser draws and records a rig with, carried in its JSON (static/js/rig.js holds
    none of them): the fold guard's, the eye edit's, the lids' sample count and the recording's loop."""
    return {
        "min_area_ratio": MIN_AREA_RATIO,
        "fold_steps": FOLD_STEPS,
        "knots": KNOTS,
        "lid_close": LID_CLOSE,
        "gaze_u": GAZE_U,
        "gaze_v": GAZE_V,
        "taper": TAPER,
        "loop_samples": LOOP_SAMPLES,
    }


def rig_name(max_side: int, max_faces: int) -> str:
    """Which kind of rig of a photo this is, as its kept object's name (app.core.kept_rigs): the format
    version, the render size and how many faces it rigs. A rig of another version, size or face count has
    another name, so it is never read by mistake."""
    return f"{FORMAT}-v{VERSION}-{max_side}px-{max_faces}faces.json"


def rigged_faces(analysis: FaceAnalysis, max_faces: int) -> list[Face]:
    """The faces a rig moves: the largest `max_faces` of those big enough to move, largest first."""
    return [f for f in analysis.faces if f.width >= MIN_FACE_PX][:max_faces]


def stored_rig_fits(mesh: MeshRig, rgb: np.ndarray, faces: list[Face]) -> bool:
    """Whether a stored rig is the rig of this frame: its size, and the very faces (their boxes to a
    pixel) that rigged_faces picks, in the same order."""
    if (mesh.width, mesh.height) != (rgb.shape[1], rgb.shape[0]) or len(mesh.faces) != len(faces):
        return False
    return all(
        np.allclose(np.array(m.box) - 0.5, np.array(f.box, np.float64), atol=1.0)
        for m, f in zip(mesh.faces, faces, strict=True)
    )


def fit_photo(photo: Image.Image, size: tuple[int, int] | None, max_side: int) -> Image.Image:
    """The photo at the render size the rig is built on and the clip drawn from: `size` if asked, else
    at most `max_side` on the long side (never enlarged)."""
    img = photo.convert("RGB")
    if size:
        return img.resize(size, Image.Resampling.LANCZOS) if img.size != tuple(size) else img
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img


def rig_of_photo(
    image: Image.Image,
    max_side: int = HD_LONG_SIDE,
    analyzer: FaceAnalyzer | None = None,
    max_faces: int = MAX_FACES,
) -> MeshRig | None:
    """The rig of a photo at the portrait animator's render size; None when it shows no usable face."""
    found = rig_of_rgb(np.asarray(fit_photo(image, None, max_side)), analyzer, max_faces)
    return None if found is None else found[0]


def rig_of_rgb(
    rgb: np.ndarray, analyzer: FaceAnalyzer | None = None, max_faces: int = MAX_FACES
) -> tuple[MeshRig, list[Face]] | None:
    """The rig of an RGB frame at its own size, and the faces it rigs (the largest `max_faces`): what the
    animator renders from. None without a usable face."""
    from models.face import shared_analyzer

    return rig_of_analysis(rgb, (analyzer or shared_analyzer()).analyze(rgb), max_faces)


def rig_of_analysis(
    rgb: np.ndarray, analysis: FaceAnalysis, max_faces: int = MAX_FACES
) -> tuple[MeshRig, list[Face]] | None:
    """rig_of_rgb from a reading of `rgb` already made."""
    faces = rigged_faces(analysis, max_faces)
    if not faces:
        return None
    return mesh_rig(build_rig(rgb.shape[1], rgb.shape[0], faces, analysis.mask), faces), faces


def mesh_rig(rig: Rig, faces: list[Face], tolerance_px: float = TOLERANCE_PX) -> MeshRig:
    """The mesh form of a dense rig (built from `faces`, in the same order)."""
    hf, wf = rig.field_shape
    fields = rig.basis.reshape(rig.channels, 2, hf, wf).transpose(0, 2, 3, 1)  # (R, hf, wf, 2)
    rows: list[tuple[str, int | None]] = [
        (name, i) for i in range(len(rig.faces)) for name in FACE_CHANNELS
    ] + [("breath", None)]
    reach = np.array([max(abs(v) for v in CHANNEL_LIMITS[ch]) for ch, _ in rows], np.float32)
    vertices, triangles, ring = _refine(rig, fields, reach, tolerance_px)
    values = _sample(fields, vertices, rig.k)  # (R, V, 2)
    values[:, :ring] = 0.0  # the ring outside the photo holds the border still
    scales = np.maximum(np.abs(values).reshape(len(rows), -1).max(axis=1), 1e-6) / 32767.0
    quantised = np.round(values / scales[:, None, None]).astype(np.int16)
    mesh_faces = [
        MeshFace(
            box=tuple(float(v) + 0.5 for v in face.box),  # type: ignore[arg-type]
            centre=tuple(float(v) + 0.5 for v in face.points[:, :2].mean(axis=0)),  # type: ignore[arg-type]
            width=float(face.width),
            height=float(face.size),
            eyes=tuple(_shift_eye(e, 0.5) for e in fr.eyes),
        )
        for face, fr in zip(faces, rig.faces, strict=True)
    ]
    return MeshRig(
        rig.width, rig.height, vertices, triangles, rows, scales.astype(np.float32), quantised, mesh_faces
    )


def dense_rig(mesh: MeshRig) -> Rig:
    """The rig the renderer (warp.py) draws: the mesh's piecewise-linear fields on the coarse grid."""
    w, h = mesh.width, mesh.height
    k = max(1, math.ceil(max(w, h) / FIELD_MAX_SIDE))
    hf, wf = math.ceil(h / k), math.ceil(w / k)
    index, bary = _locate(mesh.vertices, mesh.triangles, k, hf, wf)
    rows = len(mesh.rows)
    # Each vertex's displacements in one row (V, R*2), so a grid point's three corners are three row
    # gathers, a third of the time of gathering along the middle axis of (R, V, 2).
    by_vertex = np.ascontiguousarray(mesh.displacements.transpose(1, 0, 2).reshape(-1, rows * 2))
    corners = mesh.triangles[index]  # (hf*wf, 3)
    fields = sum(bary[:, j, None] * by_vertex[corners[:, j]] for j in range(3))  # (hf*wf, R*2)
    basis = np.ascontiguousarray(fields.reshape(-1, rows, 2).transpose(1, 2, 0).reshape(rows, -1), np.float32)
    faces = [
        FaceRig(eyes=tuple(_shift_eye(e, -0.5) for e in f.eyes), first_channel=mesh.rows.index(("yaw", i)))
        for i, f in enumerate(mesh.faces)
    ]
    breath = next(i for i, (ch, _) in enumerate(mesh.rows) if ch == "breath")
    return Rig(w, h, k, basis, faces, breath, roi_of(basis, hf, wf, faces, k), FoldGuard(mesh))


class FoldGuard:
    """How much of a frame's position motion the mesh can take without folding: 1, or the largest
    fraction (bisection, FOLD_STEPS halvings) at which no moved triangle keeps less than MIN_AREA_RATIO of
    its rest area. A strong roll can squeeze the feathered edge of a tall hat or hair; a pose past that
    eases to a stop instead of jumping. The browser's live view makes this same test (static/js/rig.js),
    so both scale a frame alike."""

    def __init__(self, mesh: MeshRig) -> None:
        self.displacements = mesh.displacements.astype(np.float64)  # (R, V, 2)
        self.vertices = mesh.vertices.astype(np.float64)
        self.triangles = mesh.triangles
        self.rest = _doubled_areas(self.vertices, self.triangles)
        self.counted = self.rest > 1e-6

    def __call__(self, coeffs: np.ndarray) -> float:
        motion = np.tensordot(np.asarray(coeffs, np.float64), self.displacements, axes=1)  # (V, 2)

        def fits(scale: float) -> bool:
            return bool(self._keeps_area(self.vertices + scale * motion))

        if fits(1.0):
            return 1.0
        return self._bisect(fits)

    def scales(self, coeffs: np.ndarray) -> np.ndarray:
        """The scale of every frame (T,) for channel values (T, C): one pass over all frames for the
        common case, a whole frame fits; the frames that do not are bisected one by one, as above."""
        c = np.asarray(coeffs, np.float64)
        fit = self._keeps_area(self.vertices + np.tensordot(c, self.displacements, axes=1))
        out = np.ones(len(c))
        for i in np.nonzero(~fit)[0]:
            out[i] = self(c[i])
        return out

    def _keeps_area(self, moved: np.ndarray) -> np.ndarray:
        """For vertex positions (V, 2), or frames of them (T, V, 2): whether every triangle keeps at least
        MIN_AREA_RATIO of its rest area."""
        areas = _doubled_areas(moved, self.triangles)
        return (areas[..., self.counted] / self.rest[self.counted]).min(axis=-1) >= MIN_AREA_RATIO

    @staticmethod
    def _bisect(fits: Callable[[float], bool]) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(FOLD_STEPS):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo


def _doubled_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice each triangle's signed area, for points (V, 2) or frames of them (T, V, 2)."""
    a, b, c = (points[..., triangles[:, j], :] for j in range(3))
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (
        c[..., 0] - a[..., 0]
    )


# --- building the mesh -----------------------------------------------------------------------------------


def _refine(
    rig: Rig, fields: np.ndarray, reach: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Vertices and triangles whose piecewise-linear fields stay within `tolerance` px of the dense ones
    (each row at its channel's full range): start coarse, then add the worst grid point of every cell
    that is still off, with cells halving each round. The first (count) vertices, the ring, lie outside
    the photo."""
    w, h, k = rig.width, rig.height, rig.k
    hf, wf = rig.field_shape
    side = max(w, h)
    step = side / 8.0
    margin = 0.04 * side + 8.0
    ring = _rectangle(-margin, -margin, w + margin, h + margin, step)  # outside the photo: never moves
    points = [
        *ring,
        *_rectangle(0.0, 0.0, float(w), float(h), step / 2),
        *[(x, y) for y in _inside(0, h, step) for x in _inside(0, w, step)],
    ]
    verts = _unique(np.array(points, np.float32))
    gx = ((np.arange(wf, dtype=np.float32) + 0.5) * k)[None, :].repeat(hf, 0)
    gy = ((np.arange(hf, dtype=np.float32) + 0.5) * k)[:, None].repeat(wf, 1)
    cell = max(2, round(step / 2 / k))
    for _ in range(MAX_ROUNDS):
        tris = _delaunay(verts, -margin - 2, -margin - 2, w + margin + 2, h + margin + 2)
        values = _sample(fields, verts, k)
        values[:, : len(ring)] = 0.0
        index, bary = _locate(verts, tris, k, hf, wf)
        approx = np.einsum("gc,rgcd->rgd", bary, values[:, tris[index]]).reshape(fields.shape)
        err = (np.linalg.norm(approx - fields, axis=-1) * reach[:, None, None]).max(axis=0)
        added = _worst_per_cell(err, cell, tolerance)
        if not len(added):
            return verts, tris, len(ring)
        new = np.stack([gx[added[:, 0], added[:, 1]], gy[added[:, 0], added[:, 1]]], axis=1)
        grown = _unique(np.concatenate([verts, new.astype(np.float32)]))
        if len(grown) == len(verts):  # only points it already has: as close as this grid can tell
            return verts, tris, len(ring)
        verts = grown
        cell = max(MIN_CELL, cell // 2)
    return verts, _delaunay(verts, -margin - 2, -margin - 2, w + margin + 2, h + margin + 2), len(ring)


def _worst_per_cell(err: np.ndarray, cell: int, tolerance: float) -> np.ndarray:
    """(row, col) of the largest error in each cell×cell block whose largest error exceeds tolerance."""
    hf, wf = err.shape
    hb, wb = math.ceil(hf / cell), math.ceil(wf / cell)
    padded = np.zeros((hb * cell, wb * cell), np.float32)
    padded[:hf, :wf] = err
    blocks = padded.reshape(hb, cell, wb, cell).transpose(0, 2, 1, 3).reshape(hb, wb, cell * cell)
    best = blocks.argmax(axis=2)
    worst = np.take_along_axis(blocks, best[..., None], axis=2)[..., 0]
    bi, bj = np.nonzero(worst > tolerance)
    r = bi * cell + best[bi, bj] // cell
    c = bj * cell + best[bi, bj] % cell
    return np.stack([r, c], axis=1)


def _rectangle(x0: float, y0: float, x1: float, y1: float, step: float) -> list[tuple[float, float]]:
    nx, ny = max(1, math.ceil((x1 - x0) / step)), max(1, math.ceil((y1 - y0) / step))
    xs, ys = np.linspace(x0, x1, nx + 1), np.linspace(y0, y1, ny + 1)
    return (
        [(x, y0) for x in xs]
        + [(x, y1) for x in xs]
        + [(x0, y) for y in ys[1:-1]]
        + [(x1, y) for y in ys[1:-1]]
    )


def _inside(lo: float, hi: float, step: float) -> np.ndarray:
    n = max(1, math.ceil((hi - lo) / step))
    return np.linspace(lo, hi, n + 1)[1:-1]


def _unique(points: np.ndarray) -> np.ndarray:
    _, first = np.unique(points, axis=0, return_index=True)
    return points[np.sort(first)]


def _delaunay(points: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Delaunay triangles (T, 3) of `points` (OpenCV's Subdiv2D: no SciPy in the web tier)."""
    subdiv = cv2.Subdiv2D((int(math.floor(x0)), int(math.floor(y0)), int(math.ceil(x1 - x0)) + 1,
                           int(math.ceil(y1 - y0)) + 1))  # fmt: skip
    subdiv.insert(points.astype(np.float32))  # type: ignore[call-overload]  # stub: an (N, 2) array works
    corners = np.asarray(subdiv.getTriangleList(), np.float32).reshape(-1, 3, 2)
    # Subdiv2D answers coordinates; find each one's index by its exact float32 bits.
    keys = _bits(points.astype(np.float32))
    order = np.argsort(keys)
    wanted = _bits(corners.reshape(-1, 2))
    at = np.clip(np.searchsorted(keys[order], wanted), 0, len(keys) - 1)
    found = keys[order][at] == wanted
    ids = order[at].reshape(-1, 3)
    ids = ids[found.reshape(-1, 3).all(axis=1)]  # drop triangles on Subdiv2D's virtual outer vertices
    a, b, c = (points[ids[:, j]].astype(np.float64) for j in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    ids = np.where((cross < 0)[:, None], ids[:, [0, 2, 1]], ids)  # one winding for all
    return ids[np.abs(cross) > 1e-9].astype(np.int32)


def _bits(xy: np.ndarray) -> np.ndarray:
    return (xy[:, 0].view(np.uint32).astype(np.uint64) << np.uint64(32)) | xy[:, 1].view(np.uint32)


def _locate(
    vertices: np.ndarray, triangles: np.ndarray, k: int, hf: int, wf: int
) -> tuple[np.ndarray, np.ndarray]:
    """For every coarse-grid point (image coordinates ((j + .5)k, (i + .5)k)): its triangle and its
    barycentric weights, (hf*wf,) and (hf*wf, 3). Found by drawing each triangle's number into the grid."""
    shift = 4
    grid_xy = (vertices / k - 0.5) * (1 << shift)  # grid point j sits at pixel j of the id image
    ids = np.full((hf, wf), -1, np.int32)
    corners = np.round(grid_xy[triangles]).astype(np.int32)  # (T, 3, 2)
    for t in range(len(triangles)):
        cv2.fillConvexPoly(ids, corners[t], (t,), cv2.LINE_8, shift)
    index = ids.reshape(-1)
    if (index < 0).any():
        raise AssertionError("the mesh does not cover the photo")  # cannot happen: the ring encloses it
    gx = (np.arange(wf, dtype=np.float64) + 0.5) * k
    gy = (np.arange(hf, dtype=np.float64) + 0.5) * k
    px, py = np.meshgrid(gx, gy)
    p = np.stack([px.reshape(-1), py.reshape(-1)], axis=1)
    bary = _barycentric(vertices, triangles[index], p)
    # Rasterising decides edge pixels either way: where the drawn triangle does not contain the point,
    # take the one of its 3×3 neighbourhood's triangles that does (the largest smallest weight).
    off = np.nonzero(bary.min(axis=1) < -1e-5)[0]
    if len(off):
        padded = np.pad(ids, 1, mode="edge")
        r, c = off // wf, off % wf
        near = np.stack([padded[r + i, c + j] for i in range(3) for j in range(3)], axis=1)  # (n, 9)
        tries = _barycentric(vertices, triangles[near.reshape(-1)], np.repeat(p[off], 9, axis=0))
        best = tries.reshape(-1, 9, 3).min(axis=2).argmax(axis=1)
        index[off] = near[np.arange(len(off)), best]
        bary[off] = tries.reshape(-1, 9, 3)[np.arange(len(off)), best]
    return index, bary.astype(np.float32)


def _barycentric(vertices: np.ndarray, corners: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Weights (n, 3) of points p (n, 2) in triangles given by their vertex indices (n, 3)."""
    a, b, c = (vertices[corners[:, j]].astype(np.float64) for j in range(3))
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    wb = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    wc = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    return np.stack([1.0 - wb - wc, wb, wc], axis=1)


def _sample(fields: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    """Each row's field (R, hf, wf, 2) at `points` (image coordinates), bilinear, edges replicated."""
    mx = (points[:, 0] / k - 0.5).astype(np.float32)[None, :]
    my = (points[:, 1] / k - 0.5).astype(np.float32)[None, :]
    out = np.empty((fields.shape[0], len(points), 2), np.float32)
    for r, f in enumerate(fields):
        out[r] = cv2.remap(f, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]
    return out


# --- JSON -----------------------------------------------------------------------------------------------


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _unb64(text: str, dtype: str) -> np.ndarray:
    raw = base64.b64decode(text, validate=True)
    if len(raw) % np.dtype(dtype).itemsize:
        raise ValueError("a typed array's bytes do not divide into whole numbers")
    return np.frombuffer(raw, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="))


def _shift_eye(e: EyeRig, by: float) -> EyeRig:
    """The eye in coordinates moved by `by` px (pixel-index ↔ image coordinates)."""
    x0, y0, x1, y1 = e.box
    return EyeRig(
        origin=e.origin + by, eu=e.eu, ev=e.ev, length=e.length, knots=e.knots, upper=e.upper,
        lower=e.lower, gap=e.gap, skin=e.skin, box=(x0 + by, y0 + by, x1 + by, y1 + by),
    )  # fmt: skip


def _face_json(f: MeshFace) -> dict[str, Any]:
    return {
        "box": list(f.box),
        "centre": list(f.centre),
        "width": f.width,
        "height": f.height,
        "eyes": [
            {
                "origin": e.origin.tolist(),
                "eu": e.eu.tolist(),
                "ev": e.ev.tolist(),
                "length": e.length,
                "gap": e.gap,
                "skin": e.skin,
                "upper": e.upper.tolist(),
                "lower": e.lower.tolist(),
                "box": list(e.box),
            }  # fmt: skip
            for e in f.eyes
        ],
    }


def _face_from_json(f: Mapping[str, Any]) -> MeshFace:
    eyes = []
    for e in f["eyes"]:
        upper, lower = np.array(e["upper"], np.float64), np.array(e["lower"], np.float64)
        if upper.shape != (KNOTS,) or lower.shape != (KNOTS,):
            raise ValueError(f"an eye's lid curves must have {KNOTS} samples")
        length = float(e["length"])
        eyes.append(EyeRig(
            origin=np.array(e["origin"], np.float64), eu=np.array(e["eu"], np.float64),
            ev=np.array(e["ev"], np.float64), length=length, knots=np.linspace(0.0, length, KNOTS),
            upper=upper, lower=lower, gap=float(e["gap"]), skin=float(e["skin"]),
            box=tuple(float(v) for v in e["box"]),  # type: ignore[arg-type]
        ))  # fmt: skip
    return MeshFace(
        box=tuple(float(v) for v in f["box"]),  # type: ignore[arg-type]
        centre=tuple(float(v) for v in f["centre"]),  # type: ignore[arg-type]
        width=float(f["width"]),
        height=float(f["height"]),
        eyes=tuple(eyes),
    )
