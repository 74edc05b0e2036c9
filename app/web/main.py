"""The web application: `uvicorn app.web.main:create_app --factory`.

Everything the app uses (engine, object store, broker producer, metrics, rate limiter) is built here
from one Settings object and kept on `app.state`, so an app never depends on process globals.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from sqlalchemy.orm import sessionmaker

from app.core.config import Settings, get_settings
from app.core.db import engine_for
from app.core.queue import make_producer
from app.core.storage import make_store
from app.web.errors import install_error_handlers
from app.web.head import HeadAsGet
from app.web.metrics import Metrics, MetricsMiddleware
from app.web.ratelimit import RateLimiter
from app.web.routes import health, jobs, pages, photos, share
from app.web.security import SecurityMiddleware
from models.quality import warm_up

log = logging.getLogger("vivify.web")

ROOT = Path(__file__).resolve().parents[2]
STATIC_DIR = ROOT / "static"
DOCS_ASSETS = "/docs/assets"  # Swagger UI's and ReDoc's own files (fastapi-offline)
TEMPLATES_DIR = ROOT / "templates"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if settings.migrate_on_start:
        import migrations

        migrations.upgrade(settings.resolved_database_url)

    engine = engine_for(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Load the face models now, not inside the first visitor's upload (~0.6 s).
        await run_in_threadpool(warm_up)
        yield
        engine.dispose()

    # FastAPIOffline: /docs (Swagger UI) and /redoc with their scripts and styles served from here, from
    # the fastapi-offline package. FastAPI's own pages load them from a CDN: blank pages offline and on any
    # private deployment without internet.
    app = FastAPIOffline(
        title="Vivify",
        version="1.0",
        summary="Upload a portrait photo, get back a short clip of the person coming to life.",
        static_url=DOCS_ASSETS,
        favicon_url="/static/icon.svg",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessionmaker(bind=engine, expire_on_commit=False)
    app.state.store = make_store(settings)
    app.state.producer = make_producer(settings)
    app.state.metrics = Metrics(app.state.sessions)
    # Shared by every web process through Redis in the production shape (Settings.resolved_limits_url).
    limits_url = settings.resolved_limits_url
    app.state.rate_limiter = RateLimiter(settings.rate_limit, limits_url, "requests")
    app.state.rig_rate_limiter = RateLimiter(settings.rig_rate_limit, limits_url, "rigs")  # on top

    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(photos.router)
    app.include_router(pages.router)
    app.include_router(share.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # JSON, HTML, JS and CSS travel compressed (the photo check's rig shrinks to about half); Starlette
    # leaves video, images and event streams alone.
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(HeadAsGet)  # HEAD wherever GET works
    # Outermost last: metrics see every response, security headers go on every response.
    app.add_middleware(SecurityMiddleware, settings=settings)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
