"""Face work in the web tier runs in threads of its own (app.core.face_pool): rig builds never take the
shared thread pool that pages use, wait a bounded time for their turn (then 503), are capped per client
address (429), and have a rate limit of their own."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient

import migrations
from app.core.errors import Throttled, Unavailable
from app.core.face_pool import FacePools
from app.web.main import create_app
from tests.app.api_helpers import make_settings


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_rig_builds_wait_a_bounded_time_are_capped_per_address_and_leave_the_shared_pool_alone() -> None:
    pools = FacePools(analysis=2, rigs=1, rig_wait_s=0.4, rig_waiting_per_address=2)
    outcomes: dict[str, object] = {}
    shared_borrowed: list[float] = []

    async def build(name: str, address: str, seconds: float) -> None:
        try:
            outcomes[name] = await pools.build_rig(address, slow, seconds)
        except (Throttled, Unavailable) as exc:
            outcomes[name] = exc

    async def main() -> None:
        shared = anyio.to_thread.current_default_thread_limiter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(build, "first", "a", 1.0)
            await anyio.sleep(0.05)
            tg.start_soon(build, "second, same address", "a", 0.1)  # waits, then gives up
            await anyio.sleep(0.05)
            tg.start_soon(build, "third, same address", "a", 0.1)  # over the address's share
            tg.start_soon(build, "other address", "b", 0.1)  # waits, then gives up
            await anyio.sleep(0.1)
            shared_borrowed.append(shared.borrowed_tokens)
            # An upload's face reading is not queued behind the rig build.
            t0 = time.monotonic()
            await pools.analyse(slow, 0.05)
            outcomes["analysis wait"] = time.monotonic() - t0

    anyio.run(main)
    assert outcomes["first"] == 1.0
    assert isinstance(outcomes["third, same address"], Throttled)
    assert outcomes["third, same address"].retry_after_s == 1
    for name in ("second, same address", "other address"):
        refused = outcomes[name]
        assert isinstance(refused, Unavailable) and refused.code.value == "server_busy", name
        assert refused.retry_after_s == 1
    assert shared_borrowed == [0]  # no thread of the pool that pages and sync dependencies share
    assert outcomes["analysis wait"] < 0.5
    assert pools.rigs_by_address == {}  # every slot given back


def test_the_rig_has_a_rate_limit_of_its_own(tmp_path: Path, small_portrait_jpeg: bytes) -> None:
    settings = make_settings(tmp_path, rig_rate_limit="2/minute")
    migrations.upgrade(settings.resolved_database_url)
    files = {"photo": ("me.jpg", small_portrait_jpeg, "image/jpeg")}
    with TestClient(create_app(settings)) as client:
        for _ in range(2):
            assert client.post("/api/v1/photo-check?rig=true", files=files).status_code == 200
        refused = client.post("/api/v1/photo-check?rig=true", files=files)
        assert refused.status_code == 429 and refused.headers["retry-after"]
        assert refused.json()["error"]["code"] == "rate_limited"
        assert client.post("/api/v1/photo-check", files=files).status_code == 200  # plain checks go on


@pytest.mark.parametrize("value", ["often", "0/minute!"])
def test_a_bad_rig_rate_limit_is_refused_at_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError):
        make_settings(tmp_path, rig_rate_limit=value)
