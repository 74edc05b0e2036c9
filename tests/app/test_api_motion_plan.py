"""The default motion is "auto", and the plan it makes is answered before a job exists (the photo check)
and with the job. A plan is information: planning that fails never refuses the request."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.service import plans
from app.core.tables import Job
from tests.app.api_helpers import finish_job, post_job


def _check(client: TestClient, photo: bytes, **fields: str) -> dict[str, Any]:
    r = client.post("/api/v1/photo-check", data=fields, files={"photo": ("me.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()


def _assert_a_plan(plan: dict[str, Any] | None) -> None:
    assert plan is not None
    assert set(plan) == {"description", "peaks", "intensity"}
    assert plan["description"].strip()
    assert plan["peaks"] and all(isinstance(v, float) for v in plan["peaks"].values()), plan
    assert 0 <= plan["intensity"] <= 1


def test_a_job_without_motion_is_auto_and_carries_its_plan(
    client: TestClient, app: FastAPI, portrait_jpeg: bytes
) -> None:
    r = post_job(client, portrait_jpeg)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["motion"] == "auto"
    _assert_a_plan(job["plan"])
    assert client.get(job["urls"]["self"]).json()["plan"] == job["plan"]
    with app.state.sessions() as session:
        stored = session.get(Job, job["id"]).motion_plan
    assert stored is not None and stored["name"] == "auto"
    assert {k: stored[k] for k in ("description", "peaks", "intensity")} == job["plan"]


def test_the_photo_check_plans_the_motion_a_job_with_its_seed_then_gets(
    client: TestClient, portrait_jpeg: bytes
) -> None:
    check = _check(client, portrait_jpeg)
    assert check["ok"] is True and check["problem"] is None
    _assert_a_plan(check["plan"])
    assert isinstance(check["seed"], int)
    assert client.get("/api/v1/jobs").json()["jobs"] == []  # no job, no allowance spent
    job = post_job(client, portrait_jpeg, seed=str(check["seed"])).json()
    assert job["motion"] == "auto" and job["plan"] == check["plan"]
    # The motion and seed sent are the ones planned.
    again = _check(client, portrait_jpeg, motion="nod", seed="7")
    assert again["seed"] == 7 and "nod" in again["plan"]["description"].lower()


def test_an_explicit_motion_is_planned_as_asked(client: TestClient, portrait_jpeg: bytes) -> None:
    job = post_job(client, portrait_jpeg, motion="look left and smile").json()
    assert job["motion"] == "look left and smile"
    _assert_a_plan(job["plan"])
    description = job["plan"]["description"].lower()
    assert "left" in description and "smil" in description, description
    assert job["plan"]["peaks"].get("smile", 0) > 0


def test_a_motion_or_seed_a_job_would_refuse_is_the_checks_problem(
    client: TestClient, portrait_jpeg: bytes
) -> None:
    for fields, code in (({"motion": "moonwalk please"}, "unknown_motion"), ({"seed": "-1"}, "invalid_seed")):
        check = _check(client, portrait_jpeg, **fields)
        assert check["ok"] is False and check["problem"]["code"] == code, check
        assert check["plan"] is None and check["seed"] is None
        assert check["photo"]["quality"]["faces"] == 1  # the photo's own report still comes back


def test_animate_again_plans_from_the_stored_photo(
    client: TestClient, app: FastAPI, portrait_jpeg: bytes
) -> None:
    first = post_job(client, portrait_jpeg, motion="smile").json()
    finish_job(app, first["id"])
    again = client.post(f"/api/v1/jobs/{first['id']}/again", data={"motion": "nod"})
    assert again.status_code == 202, again.text
    _assert_a_plan(again.json()["plan"])
    assert "nod" in again.json()["plan"]["description"].lower()
    plain = client.post(f"/api/v1/jobs/{first['id']}/again", data={"seed": "5"}).json()
    assert plain["motion"] == "auto"
    _assert_a_plan(plain["plan"])


def test_a_planning_failure_stores_no_plan_and_refuses_nothing(
    client: TestClient,
    portrait_jpeg: bytes,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the planner broke")

    monkeypatch.setattr(plans, "plan_motion", broken)
    with caplog.at_level(logging.WARNING, logger="vivify.service"):
        r = post_job(client, portrait_jpeg)
        assert r.status_code == 202, r.text
        assert r.json()["motion"] == "auto" and r.json()["plan"] is None
        check = _check(client, portrait_jpeg)
        assert check["ok"] is True and check["plan"] is None
        again = client.post(f"/api/v1/jobs/{r.json()['id']}/again", data={"motion": "nod"})
        assert again.status_code == 202 and again.json()["plan"] is None
    assert sum("motion not planned (RuntimeError)" in m for m in caplog.messages) == 3


@pytest.mark.parametrize(
    "stored",
    [None, {}, {"description": ""}, {"description": "nods", "peaks": {"yaw": "far"}, "intensity": 0.5}],
    ids=["none", "empty", "no-words", "bad-peaks"],
)
def test_a_job_without_a_readable_plan_answers_without_one(
    client: TestClient, app: FastAPI, small_portrait_jpeg: bytes, stored: dict[str, Any] | None
) -> None:
    """Jobs from before plans (NULL), or a plan this version cannot read: the job still answers."""
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    with app.state.sessions() as session:
        session.get(Job, job_id).motion_plan = stored
        session.commit()
    r = client.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["plan"] is None
    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert re.search(r'id="job-plan"\s+hidden>\s*</p>', page.text), "an empty, hidden plan line"
