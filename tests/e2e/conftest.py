"""Fixtures for the end-to-end tests: real Redis, Postgres and S3 servers, started once per session."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from e2e_stack import ACTIVE_STACKS, BUCKET, PostgresServer, RedisServer, S3Server, Stack

REDIS_DBS = itertools.cycle(range(1, 16))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture
def stack_factory(
    tmp_path: Path, redis_server: RedisServer, postgres_server: PostgresServer, s3_server: S3Server
) -> Iterator[Callable[..., Stack]]:
    """Build a Stack (own database, own Redis db number); every process it started is stopped after."""
    stacks = ACTIVE_STACKS

    def make(**settings: str) -> Stack:
        # A fresh, empty Redis db per stack: a message left by an earlier test (an unacked delivery of a
        # killed worker comes back later) never reaches this test's workers.
        redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{next(REDIS_DBS)}"
        redis.Redis.from_url(redis_url).flushdb()
        stack = Stack(tmp_path / f"stack{len(stacks)}", redis_server, postgres_server, s3_server, **settings)
        stack.settings["broker_url"] = redis_url
        stack.root.mkdir(parents=True, exist_ok=True)
        stacks.append(stack)
        return stack

    yield make
    while stacks:
        stacks.pop().stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, show what the Vivify processes logged."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for stack in ACTIVE_STACKS:
            report.sections.append(("vivify logs", stack.logs()))


@pytest.fixture
def small_portrait_jpeg() -> bytes:
    """Grace Hopper at 256 px: a real face, small enough for a fast job."""
    import io

    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as img:
        img = img.convert("RGB")
        img.thumbnail((256, 256))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        return buf.getvalue()
