"""Property-based tests of the form parsing, and schemathesis against the OpenAPI schema: no input
the schema admits (or nearly admits) may produce a 500."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import migrations
from app.core.errors import Invalid
from app.core.service import MAX_SEED, clean_motion, parse_seed
from app.web.errors import http_error
from app.web.main import create_app
from tests.app.api_helpers import make_settings

_DIR = Path(tempfile.mkdtemp(prefix="vivify-props-"))
_SETTINGS = make_settings(_DIR, free_animations_per_day=10**6, rate_limit="100000/minute")
migrations.upgrade(_SETTINGS.resolved_database_url)
APP = create_app(_SETTINGS)
CLIENT = TestClient(APP)

# 401: /metrics without the metrics token (it is private).
ALLOWED = {200, 202, 204, 307, 400, 401, 403, 404, 405, 409, 413, 415, 416, 422, 429}


@given(st.one_of(st.none(), st.text(max_size=30)))
def test_parse_seed_accepts_exactly_small_whole_numbers(raw: str | None) -> None:
    text = (raw or "").strip()
    try:
        seed = parse_seed(raw)
    except Invalid as exc:
        assert http_error(exc).status == 422 and exc.code == "invalid_seed"
        assert text and not (text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= MAX_SEED)
        return
    assert 0 <= seed <= MAX_SEED
    if text:
        assert seed == int(text)


@given(st.one_of(st.none(), st.text(max_size=260)))
def test_clean_motion_answers_text_or_a_422(raw: str | None) -> None:
    try:
        out = clean_motion(raw)
    except Invalid as exc:
        assert http_error(exc).status == 422 and exc.code in ("invalid_motion", "unknown_motion")
        return
    assert 0 < len(out) <= 200 and out == " ".join(out.split())
    if not (raw or "").split():
        assert out == "auto"  # blank is the default motion


form_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    photo=st.one_of(st.none(), st.binary(max_size=3000)),
    fields=st.dictionaries(
        st.sampled_from(["consent", "motion", "seed", "photo", "x"]), form_text, max_size=5
    ),
    filename=form_text,
)
def test_any_upload_form_gets_a_4xx_or_202_never_a_500(
    photo: bytes | None, fields: dict[str, str], filename: str
) -> None:
    files = {"photo": (filename or "f", photo, "application/octet-stream")} if photo is not None else None
    r = CLIENT.post("/api/v1/jobs", data=fields, files=files)
    assert r.status_code in ALLOWED, r.text
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"code", "message"}


schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.mark.filterwarnings("ignore")
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_schema_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    assert response.status_code in ALLOWED | {200}
