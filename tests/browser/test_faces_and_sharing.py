"""Group photos and sharing on the page, in a real Chromium with software WebGL2.

The visitor taps a face of a pair photo to keep it still: the live view stops moving it at once and the
job is sent with the other face only. The result shows the AI-generated caption, the GIF, and the photo
beside the clip; a share link opens, in a browser with no cookie, a page with the clip and the caption
only, and stops working once revoked."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By

from tests.browser.conftest import make_driver
from tests.browser.test_journey import JOB_TIMEOUT_S, api_json, browser_errors, visible, wait
from tests.fixtures.people import people_jpeg

pytestmark = pytest.mark.browser

POSE = {"yaw": 12.0, "pitch": 6.0, "smile": 1.0, "brow": 1.0}


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    browser = make_driver(webgl=True)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, portrait: Path) -> Path:
    path = tmp_path_factory.mktemp("pair") / "pair.jpg"
    with Image.open(portrait) as img:
        path.write_bytes(people_jpeg(img.convert("RGB"), 2))
    return path


def snapshot(driver, values: dict[str, float]) -> np.ndarray:
    driver.execute_script("vivifyLive.setValues(arguments[0])", values)
    shot = driver.execute_script("return vivifyLive.snapshot()")
    rgb = np.frombuffer(base64.b64decode(shot["rgb"]), np.uint8)
    return rgb.reshape(shot["height"], shot["width"], 3).astype(np.float32)


def change(a: np.ndarray, b: np.ndarray, box: list[float]) -> float:
    h, w = a.shape[:2]
    x, y, bw, bh = box
    sl = (slice(int(y * h), int((y + bh) * h)), slice(int(x * w), int((x + bw) * w)))
    return float(np.abs(a[sl] - b[sl]).mean())


def test_the_visitor_chooses_who_moves_then_shares_the_clip(own_server: str, driver, pair: Path) -> None:
    server = own_server
    driver.get(server + "/")
    wait(driver).until(lambda d: d.find_element(By.ID, "quota").text)
    driver.find_element(By.ID, "photo").send_keys(str(pair))
    wait(driver, 30).until(lambda d: visible(d, "face-picker"))
    wait(driver, 60).until(
        lambda d: d.execute_script("return !!(window.vivifyLive && vivifyLive.state().ready)")
    )
    boxes = driver.find_elements(By.CSS_SELECTOR, "#face-picker .face-box")
    assert len(boxes) == 2 and all(b.get_attribute("aria-pressed") == "true" for b in boxes)
    assert all(b.size["width"] > 20 and b.size["height"] > 20 for b in boxes)  # drawn over the faces
    faces = driver.execute_script(
        "return [...document.querySelectorAll('#face-picker .face-box')].map((b) => b.dataset.index)"
    )
    assert faces == ["0", "1"]

    # Both faces move in the live view; tap face 0 and it keeps still there while face 1 still moves.
    rest = snapshot(driver, dict.fromkeys(POSE, 0.0))
    check = api_json(driver, "/api/v1/quota")  # the page's own cookie works (sanity for api_json)
    assert "remaining" in check
    boxes_json = driver.execute_script(
        "return [...document.querySelectorAll('#face-picker .face-box')].map((b) => "
        "[b.style.left, b.style.top, b.style.width, b.style.height].map((v) => parseFloat(v) / 100))"
    )
    left, right = boxes_json
    both = snapshot(driver, POSE)
    assert change(rest, both, left) > 2.0 and change(rest, both, right) > 2.0
    boxes[0].click()
    assert boxes[0].get_attribute("aria-pressed") == "false"
    assert "1 of 2 faces will move" in driver.find_element(By.CSS_SELECTOR, ".face-picker-note").text
    snapshot(driver, dict.fromkeys(POSE, 0.0))
    chosen = snapshot(driver, POSE)
    assert change(rest, chosen, left) < 0.5  # left out: still, as the clip will keep it
    assert change(rest, chosen, right) > 2.0
    boxes[0].click()
    boxes[0].click()  # off again: the state follows every tap
    boxes[1].click()  # and the last face on cannot be turned off: someone has to move
    assert boxes[1].get_attribute("aria-pressed") == "true"

    driver.find_element(By.ID, "consent").click()
    driver.find_element(By.ID, "submit").click()
    wait(driver, 20).until(lambda d: d.find_element(By.ID, "job").get_attribute("data-job-id"))
    job_id = driver.find_element(By.ID, "job").get_attribute("data-job-id")
    job = api_json(driver, f"/api/v1/jobs/{job_id}")
    assert [f["index"] for f in job["faces"]] == [1], job

    # The result: caption, GIF, before and after.
    wait(driver, JOB_TIMEOUT_S).until(lambda d: visible(d, "job-result"))
    assert "AI-generated" in driver.find_element(By.ID, "ai-caption").text
    assert visible(driver, "ai-caption")
    wait(driver, 10).until(lambda d: visible(d, "download-gif"))
    assert driver.find_element(By.ID, "download-gif").get_attribute("href").endswith(f"/jobs/{job_id}/gif")
    driver.find_element(By.CSS_SELECTOR, "#before-after summary").click()
    wait(driver, 10).until(
        lambda d: d.execute_script(
            "const i = document.getElementById('before-photo'); return i.complete && i.naturalWidth"
        )
    )
    before, after = (driver.find_element(By.ID, i) for i in ("before-photo", "after-clip"))
    assert before.is_displayed() and after.is_displayed()
    assert after.get_attribute("src").endswith(f"/jobs/{job_id}/video")
    assert abs(before.location["y"] - after.location["y"]) < 5  # side by side
    assert before.location["x"] < after.location["x"]

    # Private until shared; the link opens for someone with no cookie, and dies when revoked.
    assert "Private" in driver.find_element(By.ID, "share-state").text
    driver.find_element(By.ID, "share-make").click()
    wait(driver, 10).until(lambda d: d.find_element(By.ID, "share-url").get_attribute("value"))
    url = driver.find_element(By.ID, "share-url").get_attribute("value")
    assert url.startswith(server + "/s/")
    stranger = make_driver()
    try:
        stranger.get(url)
        video = stranger.find_element(By.ID, "shared-video")
        wait(stranger, 20).until(lambda d: d.execute_script("return arguments[0].readyState >= 2", video))
        assert "AI-generated" in stranger.find_element(By.ID, "ai-caption").text
        robots = stranger.find_element(By.CSS_SELECTOR, "meta[name=robots]").get_attribute("content")
        assert "noindex" in robots
        assert not stranger.find_elements(By.ID, "history") and not stranger.find_elements(By.ID, "job")
        assert job_id not in stranger.page_source
        assert not stranger.get_cookies()
        assert not browser_errors(stranger)

        driver.find_element(By.ID, "share-revoke").click()
        wait(driver, 10).until(lambda d: "Private" in d.find_element(By.ID, "share-state").text)
        stranger.get(url)
        assert stranger.find_elements(By.ID, "shared-gone") and not stranger.find_elements(
            By.ID, "shared-video"
        )
    finally:
        stranger.quit()
    assert not browser_errors(driver)
