"""Which faces of a group photo move: the form's `faces` (face numbers of the photo check) checked against
the faces the check found, and kept as their boxes, which the worker matches whatever order its own
detector finds them in."""

from __future__ import annotations

import re
from typing import Any

from app.core.errors import ErrorCode, Invalid

MAX_FACES_TEXT = 64
_FACES = re.compile(r"^\s*\d{1,2}\s*(,\s*\d{1,2}\s*)*$")
KEEPS_FACES_STILL = ("portrait",)  # animators that can move some faces and keep the others still


def parse_faces(text: str | None) -> list[int] | None:
    """`0,2` → [0, 2]; blank or absent → None (every movable face). Invalid invalid_faces otherwise."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_FACES_TEXT or not _FACES.match(text):
        raise Invalid(
            ErrorCode.INVALID_FACES,
            "`faces` must be the numbers of the faces to animate, separated by commas, such as 0,2.",
        )
    return sorted({int(part) for part in text.split(",")})


def choose_faces(
    asked: list[int] | None, found: list[dict[str, Any]], animator: str
) -> list[dict[str, Any]] | None:
    """The chosen faces as [{"index", "box"}] for the job row, or None when every movable face moves (as
    when nothing is asked). An index the check did not find, or cannot move, is refused by name; so is a
    part of the faces for an animator that cannot keep a face still."""
    if asked is None:
        return None
    by_index = {int(f["index"]): f for f in found}
    movable = [i for i, f in sorted(by_index.items()) if f.get("movable")]
    for index in asked:
        if index not in by_index:
            have = f"faces 0 to {len(found) - 1}" if len(found) > 1 else "face 0" if found else "no face"
            raise Invalid(ErrorCode.UNKNOWN_FACE, f"There is no face {index} in this photo: it has {have}.")
        if index not in movable:
            raise Invalid(
                ErrorCode.FACE_NOT_MOVABLE,
                f"Face {index} cannot move: the animator moves the {len(movable)} largest faces at most, "
                "and only faces big enough to animate. Choose among faces "
                f"{', '.join(map(str, movable)) or 'none'}.",
            )
    if asked == movable:
        return None
    if animator not in KEEPS_FACES_STILL:
        raise Invalid(
            ErrorCode.FACES_UNSUPPORTED,
            f"The {animator} animator cannot keep a face still: it moves the whole picture. Leave `faces` "
            "out to animate every face, or choose the portrait animator.",
        )
    return [{"index": i, "box": list(by_index[i]["box"])} for i in asked]
