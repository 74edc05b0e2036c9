"""The clip's length and size on the page: the Length choice (3 to 10 s), and 4K offered only after the
photo check says the photo has the pixels for it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.test_journey import JOB_TIMEOUT_S, api_fetch, api_json, visible, wait

pytestmark = pytest.mark.browser


def test_the_visitor_picks_the_length_and_4k_when_the_photo_has_the_pixels(
    own_server: str, own_driver, portrait: Path, tmp_path: Path
) -> None:
    """Length: 3 to 10 s, 4 by default, and the plan is made for the length chosen. Size: 4K shows only
    after the photo check offers it (a short side of 1600 px or more), and the job is made at it."""
    server, driver = own_server, own_driver
    driver.get(server + "/")
    lengths = Select(driver.find_element(By.ID, "duration"))
    assert [o.get_attribute("value") for o in lengths.options] == [str(s) for s in range(3, 11)]
    assert lengths.first_selected_option.get_attribute("value") == "4"
    driver.find_element(By.ID, "photo").send_keys(str(portrait))  # 512×600: HD only
    wait(driver, 20).until(lambda d: visible(d, "check-plan"))
    assert not visible(driver, "size-4k")

    large = tmp_path / "large.jpg"
    with Image.open(portrait) as img:
        img.resize((1600, 1875), Image.Resampling.LANCZOS).save(large, quality=88)
    lengths.select_by_value("10")
    driver.find_element(By.ID, "motion-text").send_keys("nod")
    driver.find_element(By.ID, "photo").send_keys(str(large))
    wait(driver, 20).until(lambda d: visible(d, "size-4k"))
    wait(driver, 20).until(lambda d: "three times over" in d.find_element(By.ID, "check-plan").text)
    driver.find_element(By.ID, "size-4k-input").click()
    driver.find_element(By.ID, "consent").click()
    driver.find_element(By.ID, "submit").click()
    wait(driver).until(lambda d: re.search(r"/jobs/[\w-]+$", d.current_url))
    job = api_json(driver, f"/api/v1/jobs/{driver.current_url.rsplit('/', 1)[1]}")
    assert (job["duration_s"], job["resolution"]) == (10.0, "4k"), job
    assert job["plan"]["description"].endswith("three times over")
    api_fetch(driver, f"/api/v1/jobs/{job['id']}/cancel", "POST")  # the next tests need no queue ahead
    final = ("canceled", "succeeded", "failed")
    wait(driver, JOB_TIMEOUT_S).until(lambda d: api_json(d, f"/api/v1/jobs/{job['id']}")["status"] in final)
