"""The clip check in one plain line, for the page, the CLI and API clients alike (a job's
`clip_check.summary`), so everyone is told the same thing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_FALLBACK = {
    "retried": " — on a second, calmer try, after the first clip failed the check",
    "portrait": " — made by the portrait animator, after the first clips failed the check",
}


def clip_check_summary(check: Mapping[str, Any]) -> str:
    """e.g. "Likeness checked: same person (0.14)", or what failed when the clip did not pass."""
    if not check.get("passed"):
        failures = check.get("failures") or ["no figures"]
        return "Clip check failed: " + "; ".join(str(f) for f in failures)
    distance = check.get("identity_distance")
    if isinstance(distance, (int, float)):
        line = f"Likeness checked: same person ({distance:.2f})"
    else:
        line = "Clip checked: steady and in the photo's colours (no face to compare)"
    fallback = check.get("fallback") or {}
    return line + _FALLBACK.get(str(fallback.get("action")), "")
