"""Visitors who ask for reduced motion get no autoplay: a job page opened from a link or from "My
animations" shows its clip paused, with Play to start it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import make_driver
from tests.browser.test_journey import JOB_TIMEOUT_S, visible, wait

pytestmark = pytest.mark.browser


def test_a_job_page_opened_directly_starts_paused_for_reduced_motion(own_server: str, portrait: Path) -> None:
    server = own_server
    with httpx.Client(base_url=server, timeout=30) as client:
        r = client.post(
            "/api/v1/jobs",
            data={"consent": "true"},
            files={"photo": ("p.jpg", portrait.read_bytes(), "image/jpeg")},
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while client.get(f"/api/v1/jobs/{job_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.5)
        cookies = dict(client.cookies)
    driver = make_driver()
    try:
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-reduced-motion", "value": "reduce"}]},
        )
        driver.get(server + "/healthz")
        for name, value in cookies.items():
            driver.add_cookie({"name": name, "value": value, "path": "/"})
        driver.get(f"{server}/jobs/{job_id}")
        video = driver.find_element(By.ID, "job-video")
        wait(driver, 15).until(lambda d: d.execute_script("return arguments[0].readyState", video) >= 2)
        time.sleep(0.8)  # an autoplay would have started by now
        assert driver.execute_script("return arguments[0].paused", video)
        assert driver.execute_script("return arguments[0].currentTime", video) == 0
        assert visible(driver, "play-toggle") and driver.find_element(By.ID, "play-toggle").text == "Play"
        driver.find_element(By.ID, "play-toggle").click()  # the visitor's own choice starts it
        wait(driver, 5).until(lambda d: not d.execute_script("return arguments[0].paused", video))
    finally:
        driver.quit()
