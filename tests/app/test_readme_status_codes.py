"""Every HTTP status the README documents, answered by the running app (real uvicorn) for the reason it
gives.

The codes are read from the README itself, its error table and the API examples, so a code added there
without a case here, or a case for a code the README no longer documents, fails; and each case sends
what the README says earns that code.
"""

from __future__ import annotations

import io
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from PIL import Image

import migrations
from app.web.main import create_app
from tests.app.api_helpers import METRICS_TOKEN, finish_job, jpeg, make_settings, serve

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
UPLOAD_TIMEOUT_S = 1.0
MAX_UPLOAD_BYTES = 256 * 1024


def error_table_codes(text: str) -> set[int]:
    """The status column of the README's error table (after "Errors are always")."""
    table = text.split("Errors are always", 1)[1].split("\n\n", 2)[1]
    return {int(code) for code in re.findall(r"^\| (\d{3}) \|", table, flags=re.M)}


def api_section_codes(text: str) -> set[int]:
    """Codes the README's API section states before the table: in its curl examples' comments (`# → 202`,
    `(204)`, `307 to …`) and in its prose ("gets 404", "(200 with `Idempotent-Replayed: true`)", "a 422")."""
    section = text.split("\n## API\n", 1)[1].split("Errors are always", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    comments = [line.partition("#")[2] for line in block.splitlines() if "#" in line]
    codes = {code for c in comments for code in re.findall(r"(?<![\w.])([1-5]\d\d)(?![\w.])", c)}
    codes |= set(re.findall(r"(?:\ba |\(|\bis |\banswers? |\bgets? )([1-5]\d\d)\b", section))
    return {int(code) for code in codes}


DOCUMENTED = sorted(error_table_codes(README) | api_section_codes(README))


@dataclass
class Answer:
    status: int
    code: str | None  # the error body's code, when there is one


@dataclass
class Site:
    """The app under test on real uvicorn, started once per configuration the cases need."""

    tmp: Path
    stack: ExitStack
    s3_endpoint: str
    portrait: bytes
    started: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def app(self, name: str = "default", **overrides: Any) -> tuple[Any, httpx.Client]:
        if name not in self.started:
            folder = self.tmp / name
            folder.mkdir()
            settings = make_settings(folder, **overrides)
            if "database_url" not in overrides:
                migrations.upgrade(settings.resolved_database_url)
            app = create_app(settings)
            port = self.stack.enter_context(serve(app))
            self.started[name] = (app, f"http://127.0.0.1:{port}")
        app, base = self.started[name]
        client = self.stack.enter_context(httpx.Client(base_url=base, timeout=30, follow_redirects=False))
        return app, client

    def default(self) -> tuple[Any, httpx.Client]:
        # An allowance that the cases' jobs do not spend: 429 has a site of its own.
        return self.app(
            upload_timeout_s=UPLOAD_TIMEOUT_S, max_upload_bytes=MAX_UPLOAD_BYTES, free_animations_per_day=100
        )

    def job(self, client: httpx.Client, photo: bytes | None = None, **fields: str) -> httpx.Response:
        files = {"photo": ("me.jpg", photo or self.portrait, "image/jpeg")}
        return client.post("/api/v1/jobs", data={"consent": "true", **fields}, files=files)


def answer(r: httpx.Response) -> Answer:
    try:
        code = r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    return Answer(r.status_code, code)


def created(site: Site) -> Answer:
    return answer(site.job(site.default()[1]))


def idempotent_replay(site: Site) -> Answer:
    client = site.default()[1]
    key = {"Idempotency-Key": "readme-replay-0001"}
    files = {"photo": ("me.jpg", site.portrait, "image/jpeg")}
    first = client.post("/api/v1/jobs", data={"consent": "true"}, files=files, headers=key)
    again = client.post("/api/v1/jobs", data={"consent": "true"}, files=files, headers=key)
    assert first.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    return answer(again)


def redirected_to_s3(site: Site) -> Answer:
    creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    boto3.client("s3", endpoint_url=site.s3_endpoint, region_name="us-east-1", **creds).create_bucket(
        Bucket="readme"
    )
    app, client = site.app(
        "s3",
        storage_url="s3://readme",
        s3_endpoint_url=site.s3_endpoint,
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )
    job_id = site.job(client).json()["id"]
    finish_job(app, job_id)
    r = client.get(f"/api/v1/jobs/{job_id}/video?download=1")
    assert r.headers["location"].startswith(site.s3_endpoint)
    return answer(r)


def deleted(site: Site) -> Answer:
    client = site.default()[1]
    job_id = site.job(client).json()["id"]
    r = client.delete(f"/api/v1/jobs/{job_id}")
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404  # gone at once
    return answer(r)


def unreadable_image(site: Site) -> Answer:
    return answer(site.job(site.default()[1], site.portrait[: len(site.portrait) // 2]))


def unknown_or_others_job(site: Site) -> Answer:
    client = site.default()[1]
    job_id = site.job(client).json()["id"]
    stranger = site.stack.enter_context(httpx.Client(base_url=str(client.base_url), timeout=30))
    mine, theirs = client.get("/api/v1/jobs/no-such-job"), stranger.get(f"/api/v1/jobs/{job_id}")
    assert answer(theirs) == answer(mine)  # another visitor's job is as unknown as a missing one
    return answer(theirs)


def cross_site_form(site: Site) -> Answer:
    client = site.default()[1]
    files = {"photo": ("me.jpg", site.portrait, "image/jpeg")}
    return answer(
        client.post("/jobs", data={"consent": "true"}, files=files, headers={"Sec-Fetch-Site": "cross-site"})
    )


def trickled_body(site: Site) -> Answer:
    """A body that never finishes arriving: answered at VIVIFY_UPLOAD_TIMEOUT_S."""
    base = str(site.default()[1].base_url)
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/photo-check HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
        )
        data = b""
        deadline = time.monotonic() + 5 * UPLOAD_TIMEOUT_S
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, flags=re.I).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += sock.recv(65536)
    return Answer(int(head.split()[1]), json.loads(body)["error"]["code"])


def video_before_done(site: Site) -> Answer:
    client = site.default()[1]
    return answer(client.get(f"/api/v1/jobs/{site.job(client).json()['id']}/video"))


def too_large(site: Site) -> Answer:
    big = io.BytesIO()
    Image.effect_noise((700, 700), 90).convert("RGB").save(big, "PNG")
    assert len(big.getvalue()) > MAX_UPLOAD_BYTES
    return answer(site.job(site.default()[1], big.getvalue()))


def unsatisfiable_range(site: Site) -> Answer:
    app, client = site.default()
    job_id = site.job(client).json()["id"]
    finish_job(app, job_id)
    r = client.get(f"/api/v1/jobs/{job_id}/video", headers={"Range": "bytes=5-1"})
    assert r.headers["content-range"].startswith("bytes */")
    return answer(r)


def metrics_without_token(site: Site) -> Answer:
    client = site.default()[1]
    assert client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200
    return answer(client.get("/metrics"))


def not_a_photo(site: Site) -> Answer:
    return answer(site.job(site.default()[1], b"<svg xmlns='http://www.w3.org/2000/svg'></svg>"))


def missing_consent(site: Site) -> Answer:
    client = site.default()[1]
    files = {"photo": ("me.jpg", site.portrait, "image/jpeg")}
    return answer(client.post("/api/v1/jobs", files=files))


def allowance_spent(site: Site) -> Answer:
    r = site.job(site.app("stingy", free_animations_per_day=0)[1])
    assert r.headers["retry-after"]
    return answer(r)


def database_unreachable(site: Site) -> Answer:
    client = site.app("dead-db", database_url=f"sqlite:///{site.tmp}/missing-dir/none/x.db")[1]
    r = client.get("/api/v1/jobs")
    assert r.headers["retry-after"]
    return answer(r)


# What earns each documented status, as the README tells it; with the error code where it names one.
CASES: dict[int, tuple[Callable[[Site], Answer], str | None]] = {
    200: (idempotent_replay, None),
    202: (created, None),
    204: (deleted, None),
    307: (redirected_to_s3, None),
    400: (unreadable_image, "unreadable_image"),
    401: (metrics_without_token, None),
    403: (cross_site_form, None),
    404: (unknown_or_others_job, "not_found"),
    408: (trickled_body, "request_timeout"),
    409: (video_before_done, "not_ready"),
    413: (too_large, None),
    415: (not_a_photo, None),
    416: (unsatisfiable_range, None),
    422: (missing_consent, "consent_required"),
    429: (allowance_spent, "quota_exceeded"),
    503: (database_unreachable, "database_unavailable"),
}


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, small_portrait_jpeg_module: bytes
) -> Iterator[Site]:
    with ExitStack() as stack:
        yield Site(tmp_path_factory.mktemp("readme"), stack, s3_endpoint, small_portrait_jpeg_module)


@pytest.fixture(scope="module")
def small_portrait_jpeg_module() -> bytes:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        img = Image.open(f).convert("RGB")
    img.thumbnail((160, 160))
    return jpeg(img)


def test_the_readme_documents_the_codes_this_test_sends() -> None:
    """Drift either way fails: a code documented with no case here, or a case for an undocumented code."""
    assert DOCUMENTED, "no status codes found in the README: has its error table moved?"
    undocumented, unsent = sorted(set(CASES) - set(DOCUMENTED)), sorted(set(DOCUMENTED) - set(CASES))
    assert not unsent and not undocumented, (
        f"documented, no case: {unsent}; a case, undocumented: {undocumented}"
    )


@pytest.mark.parametrize("status", DOCUMENTED)
def test_each_documented_status_is_what_the_app_answers(site: Site, status: int) -> None:
    if status not in CASES:
        pytest.fail(f"the README documents {status}, and no case here sends what earns it")
    case, code = CASES[status]
    got = case(site)
    assert got.status == status, (case.__name__, got)
    if status >= 400:
        assert got.code, f"{status} without the README's error body"
    if code is not None:
        assert got.code == code, (case.__name__, got)
