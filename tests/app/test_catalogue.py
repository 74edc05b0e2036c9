"""The words catalogue: complete for every error code, status and stage, and the one the page embeds."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.core.errors import ErrorCode
from app.core.tables import FINAL_STATUSES, JobStatus
from app.web import catalogue as words
from app.web.rendering import help_for, plan_text, stage_text, status_label
from models.base import Stage
from tests.app.api_helpers import jpeg

ISLAND = re.compile(r'<script type="application/json" id="words">(.*?)</script>', re.S)


def _photo() -> bytes:
    return jpeg(Image.new("RGB", (128, 128), (180, 120, 90)))


def _island(html: str) -> dict[str, Any]:
    found = ISLAND.findall(html)
    assert len(found) == 1, "the page embeds the catalogue exactly once"
    return json.loads(found[0])


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_every_error_code_has_a_title_and_a_next_step(code: ErrorCode) -> None:
    entry = words.ERRORS.get(code.value)
    assert entry is not None, f"{code.value} has no words in app/web/catalogue.py"
    assert entry["title"].strip() and entry["next"].strip(), entry
    assert help_for(code.value) == {"title": entry["title"], "message": "", "next": entry["next"]}


def test_final_statuses_are_the_tables_and_every_status_has_words() -> None:
    assert set(words.FINAL) == {status.value for status in FINAL_STATUSES}
    assert set(words.STATUS["final"]) == set(words.FINAL)
    for status in JobStatus:
        assert words.STATUS["titles"].get(status.value), status
    for status in FINAL_STATUSES:
        assert words.STATUS["final_stage"].get(status.value), status
        assert words.STATUS["labels"].get(status.value), status


@pytest.mark.parametrize("stage", list(Stage), ids=lambda s: s.value)
def test_every_worker_stage_has_words(stage: Stage) -> None:
    assert words.STAGES.get(stage.value, "").strip(), f"stage {stage.value!r} has no words"
    job = {"status": "running", "stage": stage.value, "stage_detail": "", "progress": 0.5}
    if stage is not Stage.QUEUED:  # picked up but not started reads "Starting", by design
        assert stage_text(job).startswith(words.STAGES[stage.value]), stage_text(job)


def test_phrases_fill_on_the_server_as_in_the_browser() -> None:
    assert words.fill(words.PHRASES["many_ahead"], count=3) == "3 photos ahead of yours"
    assert status_label({"status": "running", "progress": 0.42}) == "Animating · 42%"
    with pytest.raises(KeyError):
        words.fill("{missing}")


def test_a_plan_reads_as_a_sentence_and_no_plan_as_nothing() -> None:
    assert plan_text({"description": "smiles, then nods", "peaks": {}}) == "Planned motion: smiles, then nods"
    assert plan_text({"description": ""}) == plan_text(None) == plan_text({}) == ""
    assert "{description}" in words.PHRASES["planned_motion"]  # words.js fills the same phrase


def test_script_json_cannot_end_its_script_element() -> None:
    tricky = {"title": "</script><script>alert(1)</script><!-- & 'quoted'"}
    text = str(words.script_json(tricky))
    assert "<" not in text and ">" not in text and "&" not in text and "'" not in text
    assert json.loads(text) == tricky


def test_pages_embed_the_catalogue_and_it_parses_to_the_same_data(client: TestClient) -> None:
    expected = json.loads(json.dumps(words.catalogue()))
    index = client.get("/")
    assert index.status_code == 200
    data = _island(index.text)
    assert data == expected
    assert data["errors"]["unknown_motion"]["title"] == "We did not understand the motion."
    # Every page extends base.html: the job page and the not-found page carry it too.
    created = client.post(
        "/jobs",
        files={"photo": ("me.jpg", _photo(), "image/jpeg")},
        data={"consent": "true", "motion": "nod"},
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text[:300]
    assert _island(client.get(created.headers["location"]).text) == expected
    missing = client.get("/jobs/no-such-job")
    assert missing.status_code == 404 and _island(missing.text) == expected


def test_the_no_javascript_form_explains_an_unknown_motion(client: TestClient) -> None:
    client.get("/")
    r = client.post(
        "/jobs",
        files={"photo": ("me.jpg", _photo(), "image/jpeg")},
        data={"consent": "true", "motion_text": "do a backflip"},
    )
    assert r.status_code == 422
    notice = r.text[r.text.index('id="form-error"') :].split("</div>")[0]
    assert words.ERRORS["unknown_motion"]["title"] in notice, notice
    assert words.DEFAULT_ERROR["title"] not in notice


def test_every_code_an_animator_fails_with_is_an_error_code() -> None:
    """A failed job carries the animator's AnimationError code: each one must be in the catalogue too."""
    raised = set()
    for path in (Path(__file__).resolve().parents[2] / "models").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", "")) == "AnimationError"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                raised.add(node.args[0].value)
    assert raised, "no AnimationError found: the scan is broken"
    assert raised <= {code.value for code in ErrorCode}, raised - {code.value for code in ErrorCode}
