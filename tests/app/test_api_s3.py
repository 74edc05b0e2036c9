"""S3 storage (moto's S3 HTTP server): clips go out as short-lived presigned URLs, to their owner only."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import boto3
import httpx
from fastapi.testclient import TestClient

import migrations
from app.core.storage import S3Store, photo_key, video_key
from app.web.main import create_app
from tests.app.api_helpers import finish_job, make_settings, post_job


def test_video_redirects_to_a_presigned_url_for_its_owner_only(
    tmp_path: Path, s3_endpoint: str, small_portrait_jpeg: bytes
) -> None:
    creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    s = make_settings(
        tmp_path,
        storage_url="s3://clips/vivify",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="test",
        s3_secret_access_key="test",
        presigned_url_ttl_s=300,
    )
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **creds)
    s3.create_bucket(Bucket="clips")
    migrations.upgrade(s.resolved_database_url)
    app = create_app(s)
    assert isinstance(app.state.store, S3Store)
    with TestClient(app, follow_redirects=False) as c, TestClient(app, follow_redirects=False) as other:
        assert c.get("/readyz").json()["checks"]["storage"] == "ok"
        job_id = post_job(c, small_portrait_jpeg).json()["id"]
        assert app.state.store.exists(photo_key(job_id))
        mp4 = finish_job(app, job_id)

        r = c.get(f"/api/v1/jobs/{job_id}/video")
        assert r.status_code == 307 and r.headers["cache-control"] == "no-store"
        url = r.headers["location"]
        query = parse_qs(urlparse(url).query)
        assert url.startswith(s3_endpoint) and query["X-Amz-Expires"] == ["300"]  # minutes, not hours
        assert httpx.get(url).content == mp4

        dl = c.get(f"/api/v1/jobs/{job_id}/video?download=1")
        disposition = parse_qs(urlparse(dl.headers["location"]).query)["response-content-disposition"]
        assert disposition == [f'attachment; filename="vivify-{job_id}.mp4"']

        assert other.get(f"/api/v1/jobs/{job_id}/video").status_code == 404  # no URL for anyone else
        # The Job JSON holds no store URL. (Not a search for "s3": a random job id may hold those letters.)
        body = c.get(f"/api/v1/jobs/{job_id}").text
        assert urlparse(s3_endpoint).netloc not in body and "x-amz" not in body.lower()

        assert c.delete(f"/api/v1/jobs/{job_id}").status_code == 204
        assert not app.state.store.exists(video_key(job_id)) and not app.state.store.exists(photo_key(job_id))


def test_csp_allows_the_public_s3_endpoint_for_media(tmp_path: Path) -> None:
    s = make_settings(
        tmp_path,
        storage_url="s3://clips",
        s3_endpoint_url="http://minio:9000",
        s3_public_endpoint_url="https://media.example.com/",
    )
    migrations.upgrade(s.resolved_database_url)
    with TestClient(create_app(s)) as c:
        csp = c.get("/healthz").headers["content-security-policy"]
    assert "media-src 'self' blob: https://media.example.com;" in csp
    assert "img-src 'self' data: blob: https://media.example.com;" in csp


def test_shared_media_go_out_by_the_token_alone_as_presigned_urls(
    tmp_path: Path, s3_endpoint: str, small_portrait_jpeg: bytes
) -> None:
    creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    s = make_settings(
        tmp_path,
        storage_url="s3://shared/vivify",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **creds).create_bucket(
        Bucket="shared"
    )
    migrations.upgrade(s.resolved_database_url)
    app = create_app(s)
    with TestClient(app, follow_redirects=False) as c, TestClient(app, follow_redirects=False) as stranger:
        job_id = post_job(c, small_portrait_jpeg).json()["id"]
        mp4 = finish_job(app, job_id, gif=True)
        token = c.post(f"/api/v1/jobs/{job_id}/share").json()["url"].rsplit("/", 1)[1]
        assert stranger.get(f"/s/{token}").status_code == 200
        video = stranger.get(f"/api/v1/shared/{token}/video")
        assert video.status_code == 307 and video.headers["location"].startswith(s3_endpoint)
        assert httpx.get(video.headers["location"]).content == mp4
        gif = stranger.get(f"/api/v1/shared/{token}/gif")
        assert httpx.get(gif.headers["location"]).content.startswith(b"GIF89a")
        assert not stranger.cookies
        assert stranger.get(f"/api/v1/jobs/{job_id}/video").status_code == 404  # still the owner's
        assert c.delete(f"/api/v1/jobs/{job_id}/share").status_code == 204
        assert stranger.get(f"/api/v1/shared/{token}/video").status_code == 404
        assert c.delete(f"/api/v1/jobs/{job_id}").status_code == 204
        assert not app.state.store.exists(f"jobs/{job_id}/clip.gif")  # the GIF goes with the job
