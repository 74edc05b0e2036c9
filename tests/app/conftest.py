"""The web app on the embedded defaults: SQLite migrated by Alembic, a local object store and the
filesystem broker, all in a fresh tmp folder per test. No worker runs: messages stay in the folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

import migrations
from app.core.config import Settings
from app.web.main import create_app
from tests.app.api_helpers import jpeg, make_settings
from tests.fixtures.s3 import s3_server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = make_settings(tmp_path)
    migrations.upgrade(s.resolved_database_url)
    return s


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    application = create_app(settings)
    application.state.events_poll_s = 0.05
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def other_client(app: FastAPI) -> Iterator[TestClient]:
    """A second visitor (own cookie jar) on the same app."""
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def small_portrait_jpeg(portrait: Image.Image) -> bytes:
    img = portrait.copy()
    img.thumbnail((128, 128))
    return jpeg(img, quality=90)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP server (moto) on a free port, one per test module."""
    with s3_server() as endpoint:
        yield endpoint
