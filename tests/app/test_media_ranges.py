"""Range requests and HEAD on a job's video and poster (local storage: app.web.media, RFC 9110 §14).

Every refusal is the JSON error shape: 416 `range_not_satisfiable` with `Content-Range: bytes */<size>`
for a reversed or unsatisfiable range; a Range that is not a byte range set is ignored (200, whole)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import migrations
from app.web.main import create_app
from app.web.media import Unsatisfiable, satisfiable_ranges
from tests.app.api_helpers import finish_job, make_settings, post_job
from tests.fixtures.s3 import create_bucket


@pytest.fixture
def clip(client: TestClient, app: FastAPI, small_portrait_jpeg: bytes) -> tuple[str, bytes]:
    """A finished job's video URL and its bytes."""
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    mp4 = finish_job(app, job_id)
    return f"/api/v1/jobs/{job_id}/video", mp4


def _is_416(r: httpx.Response, size: int) -> None:
    assert r.status_code == 416, (r.status_code, r.text[:200])
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-range"] == f"bytes */{size}"
    assert r.json()["error"]["code"] == "range_not_satisfiable"
    assert set(r.json()["error"]) == {"code", "message"}


@pytest.mark.parametrize(
    "header", ["bytes=5-1", "bytes=-0", "bytes=SIZE-", "bytes=SIZE-SIZE", "bytes=0-1,9-3"]
)
def test_reversed_or_unsatisfiable_ranges_are_a_json_416(
    clip: tuple[str, bytes], client: TestClient, header: str
) -> None:
    url, mp4 = clip
    r = client.get(url, headers={"Range": header.replace("SIZE", str(len(mp4)))})
    _is_416(r, len(mp4))
    head = client.head(url, headers={"Range": header.replace("SIZE", str(len(mp4)))})
    assert head.status_code == 416 and head.headers["content-range"] == f"bytes */{len(mp4)}"


@pytest.mark.parametrize(
    "header",
    ["bytes=abc", "bytes", "bytes=", "bytes=1-2-3", "bytes= - ", "items=0-9", "bytes=0x10-", "bytes=+1-2"],
)
def test_a_range_that_is_no_byte_range_set_is_ignored(
    clip: tuple[str, bytes], client: TestClient, header: str
) -> None:
    url, mp4 = clip
    r = client.get(url, headers={"Range": header})
    assert r.status_code == 200 and r.content == mp4
    assert r.headers["content-type"] == "video/mp4" and "content-range" not in r.headers


def test_satisfiable_ranges_are_served_and_the_rest_dropped(
    clip: tuple[str, bytes], client: TestClient
) -> None:
    url, mp4 = clip
    size = len(mp4)
    one = client.get(url, headers={"Range": "bytes=10-19"})
    assert one.status_code == 206 and one.content == mp4[10:20]
    assert one.headers["content-range"] == f"bytes 10-19/{size}"
    past_end = client.get(url, headers={"Range": f"bytes=5-{size * 3}"})  # the last byte is clamped
    assert past_end.status_code == 206 and past_end.content == mp4[5:]
    longer_suffix = client.get(url, headers={"Range": f"bytes=-{size * 3}"})  # the whole clip, as 206
    assert longer_suffix.status_code == 206 and longer_suffix.content == mp4
    dropped = client.get(url, headers={"Range": f"bytes=0-9, {size + 50}-"})  # one of two is satisfiable
    assert dropped.status_code == 206 and dropped.content == mp4[:10]
    assert dropped.headers["content-range"] == f"bytes 0-9/{size}"
    two = client.get(url, headers={"Range": "bytes=0-9,,20-29"})  # an empty list element is allowed
    assert two.status_code == 206 and two.headers["content-type"].startswith("multipart/byteranges")
    assert mp4[:10] in two.content and mp4[20:30] in two.content


def test_if_range_that_does_not_match_means_the_whole_clip(
    clip: tuple[str, bytes], client: TestClient
) -> None:
    url, mp4 = clip
    etag = client.get(url).headers["etag"]
    stale = client.get(url, headers={"Range": "bytes=5-1", "If-Range": '"not-this-one"'})
    assert stale.status_code == 200 and stale.content == mp4  # the Range does not apply at all
    fresh = client.get(url, headers={"Range": "bytes=0-3", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == mp4[:4]
    weak = client.get(url, headers={"Range": "bytes=0-3", "If-Range": f"W/{etag}"})
    assert weak.status_code == 200


def test_head_answers_the_get_headers_without_a_body(
    client: TestClient, other_client: TestClient, app: FastAPI, small_portrait_jpeg: bytes
) -> None:
    job_id = post_job(client, small_portrait_jpeg).json()["id"]
    video, poster = f"/api/v1/jobs/{job_id}/video", f"/api/v1/jobs/{job_id}/poster"
    early = client.head(video)
    assert early.status_code == 409 and early.headers["content-type"] == "application/json"
    mp4 = finish_job(app, job_id)
    for url, media in ((video, "video/mp4"), (poster, "image/jpeg"), (f"{video}?download=1", "video/mp4")):
        got, head = client.get(url), client.head(url)
        assert head.status_code == 200 and head.content == b"", url
        for name in ("content-type", "content-length", "accept-ranges", "etag", "last-modified"):
            assert head.headers[name] == got.headers[name], (url, name)
        assert head.headers["content-type"] == media
        assert head.headers.get("content-disposition") == got.headers.get("content-disposition")
    assert int(client.head(video).headers["content-length"]) == len(mp4)
    part = client.head(video, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.headers["content-range"] == f"bytes 0-99/{len(mp4)}"
    assert part.content == b""
    # Someone else's job, or none: 404 as for GET (never 405).
    assert other_client.head(video).status_code == 404
    assert client.head("/api/v1/jobs/nope/poster").status_code == 404


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, [(0, 0)]),
        ("BYTES = 2-", 10, [(2, 9)]),
        ("bytes=-3", 10, [(7, 9)]),
        ("bytes=-30", 10, [(0, 9)]),
        ("bytes=8-20", 10, [(8, 9)]),
        ("bytes=0-1, 4-5", 10, [(0, 1), (4, 5)]),
        ("bytes=0-1,12-", 10, [(0, 1)]),
        ("bytes=a-b", 10, None),
        ("pages=1-2", 10, None),
        ("bytes=1-2;x", 10, None),
        ("bytes=" + ",".join(["0-1"] * 101), 10, None),  # too many ranges: the whole file
    ],
)
def test_range_parser(header: str, size: int, expected: list[tuple[int, int]] | None) -> None:
    assert satisfiable_ranges(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=5-1", 10), ("bytes=-0", 10), ("bytes=10-", 10), ("bytes=0-", 0), ("bytes=-5", 0)],
)
def test_range_parser_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        satisfiable_ranges(header, size)


def test_head_on_s3_storage_is_the_same_redirect(
    tmp_path: Path, s3_endpoint: str, small_portrait_jpeg: bytes
) -> None:
    s = make_settings(
        tmp_path,
        storage_url="s3://clips",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )
    create_bucket(s3_endpoint, "clips")
    migrations.upgrade(s.resolved_database_url)
    app = create_app(s)
    with TestClient(app, follow_redirects=False) as c:
        job_id = post_job(c, small_portrait_jpeg).json()["id"]
        finish_job(app, job_id)
        for kind in ("video", "poster"):
            got, head = c.get(f"/api/v1/jobs/{job_id}/{kind}"), c.head(f"/api/v1/jobs/{job_id}/{kind}")
            assert got.status_code == head.status_code == 307
            assert head.headers["cache-control"] == "no-store" and head.content == b""
            assert urlparse(head.headers["location"]).path == urlparse(got.headers["location"]).path
            # Each URL is signed for its own method (S3 refuses a HEAD on a GET signature; moto does not
            # check, so compare signatures made in the same second: they differ only by the method).
            for _ in range(3):
                get_q = parse_qs(urlparse(c.get(f"/api/v1/jobs/{job_id}/{kind}").headers["location"]).query)
                head_q = parse_qs(urlparse(c.head(f"/api/v1/jobs/{job_id}/{kind}").headers["location"]).query)
                if get_q["X-Amz-Date"] == head_q["X-Amz-Date"]:
                    break
            assert get_q["X-Amz-Date"] == head_q["X-Amz-Date"]
            assert get_q["X-Amz-Signature"] != head_q["X-Amz-Signature"]
            body = httpx.get(got.headers["location"])
            followed = httpx.head(head.headers["location"])
            assert body.status_code == followed.status_code == 200 and body.content
            assert int(followed.headers["content-length"]) == len(body.content)
