"""What a first-time visitor meets on the page, at desktop and phone sizes, in headless Chromium.

Typed words are the chosen motion, with their plan; a finished clip says what it did and can be
scrubbed and shown fullscreen; "Deleted." reads as a success; touch-only and pointer-only words show
where they apply; on a phone the photo check's answer and "My animations" are in reach; each clip in
"My animations" can be downloaded and deleted (after a confirmation); the allowance is at the top of the
form; the page promises the queue's own run estimate; "no face" is said once.

The file sends four jobs, within one address's daily allowance of five: it has its own server.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from selenium.webdriver.common.by import By

from app.core.waits import first_run_s
from app.web.catalogue import PHRASES, fill
from app.web.rendering import duration_text
from models.quality import NO_FACE_NEXT, NO_FACE_TITLE
from tests.browser.conftest import ANIMATOR, as_phone, make_driver
from tests.browser.test_journey import JOB_TIMEOUT_S, api_fetch, api_json, visible, wait

pytestmark = pytest.mark.browser

PHONE = (390, 844)


@pytest.fixture()
def phone() -> Iterator[object]:
    """A phone-sized browser with a touch screen: `(pointer: coarse)` holds, as on a real phone."""
    browser = make_driver(width=PHONE[0], height=PHONE[1])
    as_phone(browser, *PHONE)
    try:
        yield browser
    finally:
        browser.quit()


def _finished_job(server: str, portrait: Path, motion: str = "nod") -> tuple[dict, dict[str, str]]:
    """A job sent through the API and waited for; the job and the visitor's cookies."""
    with httpx.Client(base_url=server, timeout=30) as client:
        r = client.post(
            "/api/v1/jobs",
            data={"consent": "true", "motion": motion},
            files={"photo": ("p.jpg", portrait.read_bytes(), "image/jpeg")},
        )
        assert r.status_code == 202, r.text
        job = r.json()
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while job["status"] not in ("succeeded", "failed", "canceled"):
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.3)
            job = client.get(f"/api/v1/jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job
        return job, dict(client.cookies)


def _as_visitor(driver, server: str, cookies: dict[str, str]) -> None:
    driver.get(server + "/healthz")
    for name, value in cookies.items():
        driver.add_cookie({"name": name, "value": value, "path": "/"})


def _in_view(driver, element_id: str) -> bool:
    return driver.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight",
        element_id,
    )


def _style(driver, element, prop: str) -> str:
    return driver.execute_script("return getComputedStyle(arguments[0])[arguments[1]]", element, prop)


def test_the_page_promises_the_queues_own_estimate(own_server: str, own_driver, portrait: Path) -> None:
    """Runs first, on a server that has made no clip: the promise and the first job's ETA are one guess,
    the animator's, and not "about a minute" for a clip that takes seconds."""
    own_driver.get(own_server + "/")
    guess = first_run_s(ANIMATOR)
    lead = own_driver.find_element(By.ID, "lead").text
    assert lead == fill(PHRASES["lead"], duration=duration_text(guess)), lead
    with httpx.Client(base_url=own_server, timeout=30) as client:
        r = client.post(
            "/api/v1/jobs",
            data={"consent": "true"},
            files={"photo": ("p.jpg", portrait.read_bytes(), "image/jpeg")},
        )
        assert r.status_code == 202, r.text
        assert r.json()["eta_s"] == pytest.approx(guess), r.json()


def test_typed_words_are_the_chosen_motion_with_their_plan(
    own_server: str, own_driver, portrait: Path
) -> None:
    driver = own_driver
    driver.get(own_server + "/")
    driver.find_element(By.ID, "photo").send_keys(str(portrait))
    wait(driver, 20).until(lambda d: visible(d, "check-plan"))
    auto_plan = driver.find_element(By.ID, "check-plan").text
    auto = driver.find_element(By.CSS_SELECTOR, "input[name=motion][value=auto]")
    text = driver.find_element(By.ID, "motion-text")
    plain_border = _style(driver, text, "borderColor")
    text.send_keys("nod slowly")
    # Typing unselects Auto: the words are the motion now, and look chosen as a picked motion does.
    assert not auto.is_selected()
    assert not driver.find_elements(By.CSS_SELECTOR, "#upload-form input[name=motion]:checked")
    assert _style(driver, text, "borderColor") != plain_border
    smile = driver.find_element(By.CSS_SELECTOR, "input[name=motion][value=smile]").find_element(
        By.XPATH, ".."
    )
    auto_box = auto.find_element(By.XPATH, "..")
    # Auto is drawn as any motion not chosen is.
    assert auto_box.value_of_css_property("border-color") == smile.value_of_css_property("border-color")
    # ...and the words' own plan shows, as Auto's did.
    wait(driver, 15).until(
        lambda d: visible(d, "check-plan") and d.find_element(By.ID, "check-plan").text != auto_plan
    )
    shown = driver.find_element(By.ID, "check-plan").text
    assert re.fullmatch(r"Planned motion: .*nod.*", shown), shown
    # Clearing the words brings Auto back; typing again chooses the words again.
    driver.execute_script("const t = arguments[0]; t.value = ''; t.dispatchEvent(new Event('input'))", text)
    assert auto.is_selected()
    text.send_keys("nod slowly")
    assert not auto.is_selected()
    wait(driver, 15).until(
        lambda d: d.find_element(By.ID, "check-plan").text == shown and visible(d, "check-plan")
    )

    driver.find_element(By.ID, "consent").click()
    driver.find_element(By.ID, "submit").click()
    wait(driver).until(lambda d: re.search(r"/jobs/[\w-]+$", d.current_url))
    job_id = driver.current_url.rsplit("/", 1)[1]
    job = api_json(driver, f"/api/v1/jobs/{job_id}")
    assert job["motion"] == "nod slowly" and shown == f"Planned motion: {job['plan']['description']}"

    # The finished clip says what it did, and keeps the browser's controls: scrubbing and fullscreen.
    wait(driver, JOB_TIMEOUT_S).until(
        lambda d: d.find_element(By.ID, "job").get_attribute("data-status") == "succeeded"
    )
    assert driver.find_element(By.ID, "job-plan").text == fill(
        PHRASES["clip_motion"], description=job["plan"]["description"]
    )
    video = driver.find_element(By.ID, "job-video")
    wait(driver, 15).until(lambda d: d.execute_script("return arguments[0].readyState", video) == 4)
    assert driver.execute_script("return arguments[0].controls", video)
    assert driver.execute_script("return document.fullscreenEnabled")
    end = driver.execute_script(
        "const v = arguments[0]; return v.seekable.length ? v.seekable.end(0) : 0", video
    )
    assert end > 1.0, end
    driver.execute_script("arguments[0].currentTime = arguments[1]", video, end / 2)
    wait(driver).until(
        lambda d: abs(d.execute_script("return arguments[0].currentTime", video) - end / 2) < 0.5
    )
    assert not driver.execute_script("return arguments[0].paused", video)  # the loop keeps playing

    # Deleted from the page it was made on: a success, not drawn as an error.
    driver.find_element(By.ID, "delete").click()
    wait(driver).until(
        lambda d: visible(d, "form-error") and "Deleted" in d.find_element(By.ID, "form-error").text
    )
    _assert_success_notice(driver)


def _assert_success_notice(driver) -> None:
    box = driver.find_element(By.ID, "form-error")
    assert "notice-ok" in box.get_attribute("class").split() and box.get_attribute("role") == "status"
    ok_border = box.value_of_css_property("border-color")
    # An error in the same box afterwards (no photo, or no consent) is drawn as one again.
    consent = driver.find_element(By.ID, "consent")
    if consent.is_selected():
        consent.click()
    driver.find_element(By.ID, "submit").click()
    wait(driver).until(lambda d: "notice-error" in d.find_element(By.ID, "form-error").get_attribute("class"))
    box = driver.find_element(By.ID, "form-error")
    assert box.get_attribute("role") == "alert" and box.value_of_css_property("border-color") != ok_border


def test_deleted_from_a_job_page_opened_directly_is_a_success(
    own_server: str, own_driver, portrait: Path
) -> None:
    job, cookies = _finished_job(own_server, portrait)
    driver = own_driver
    _as_visitor(driver, own_server, cookies)
    driver.get(f"{own_server}/jobs/{job['id']}")
    wait(driver).until(lambda d: visible(d, "job-result"))
    driver.find_element(By.ID, "delete").click()
    wait(driver).until(lambda d: d.current_url.endswith("/?deleted=1"))
    assert "Deleted" in driver.find_element(By.ID, "form-error").text
    _assert_success_notice(driver)


def test_my_animations_downloads_and_deletes_each_clip(own_server: str, own_driver, portrait: Path) -> None:
    job, cookies = _finished_job(own_server, portrait, motion="smile")
    driver = own_driver
    _as_visitor(driver, own_server, cookies)
    driver.get(own_server + "/")
    item = f"#history-list li[data-job-id='{job['id']}']"
    wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{item} .history-download"))
    link = driver.find_element(By.CSS_SELECTOR, f"{item} .history-download")
    assert link.get_attribute("download") is not None
    got = api_fetch(driver, link.get_attribute("href"))
    assert got["status"] == 200 and got["head"] == "ftyp" and "attachment" in (got["disposition"] or ""), got
    # Delete asks first; "Cancel" keeps the clip.
    delete = driver.find_element(By.CSS_SELECTOR, f"{item} .history-delete button")
    delete.click()
    wait(driver).until(lambda d: d.switch_to.alert)
    assert "cannot be undone" in driver.switch_to.alert.text
    driver.switch_to.alert.dismiss()
    assert driver.find_elements(By.CSS_SELECTOR, item)
    assert api_fetch(driver, f"/api/v1/jobs/{job['id']}")["status"] == 200
    driver.find_element(By.CSS_SELECTOR, f"{item} .history-delete button").click()
    wait(driver).until(lambda d: d.switch_to.alert)
    driver.switch_to.alert.accept()
    wait(driver).until(lambda d: not d.find_elements(By.CSS_SELECTOR, item))
    assert api_fetch(driver, f"/api/v1/jobs/{job['id']}")["status"] == 404
    assert driver.current_url.rstrip("/") == own_server  # in place, no page load


def test_touch_words_only_on_touch_screens_and_pointer_words_only_with_a_pointer(
    own_server: str, own_driver, phone
) -> None:
    words = (
        "return [...document.querySelectorAll(arguments[0])].map("
        "(e) => getComputedStyle(e).display !== 'none')"
    )
    own_driver.get(own_server + "/")
    wait(own_driver).until(
        lambda d: d.execute_script("return document.documentElement.classList.contains('js')")
    )
    assert (
        not visible(own_driver, "photo-camera")
        and not own_driver.find_element(By.CSS_SELECTOR, "label[for=photo-camera]").is_displayed()
    )
    assert own_driver.find_element(By.ID, "dropzone-drag").is_displayed()
    assert all(own_driver.execute_script(words, ".pointer-only"))
    assert not any(own_driver.execute_script(words, ".touch-only"))

    phone.get(own_server + "/")
    wait(phone).until(lambda d: d.execute_script("return document.documentElement.classList.contains('js')"))
    assert phone.find_element(By.CSS_SELECTOR, "label[for=photo-camera]").is_displayed()
    assert not phone.find_element(By.ID, "dropzone-drag").is_displayed()
    assert not any(phone.execute_script(words, ".pointer-only"))  # "Drag a photo here", "Arrow keys work too"
    assert all(phone.execute_script(words, ".touch-only"))
    assert "Arrow keys" not in phone.find_element(By.TAG_NAME, "body").text


def test_on_a_phone_the_check_the_allowance_and_my_animations_are_in_reach(
    own_server: str, phone, portrait: Path
) -> None:
    phone.get(own_server + "/")
    wait(phone).until(lambda d: "of 5" in d.find_element(By.ID, "quota").text)
    assert _in_view(phone, "quota") and _in_view(phone, "history-link")  # before anything is filled in
    phone.find_element(By.ID, "photo").send_keys(str(portrait))
    wait(phone, 20).until(lambda d: d.find_element(By.ID, "check-score-text").text.endswith("/100"))
    wait(phone, 5).until(lambda d: _in_view(d, "check-verdict") and _in_view(d, "check-score"))
    phone.execute_script("window.scrollTo(0, 0)")
    phone.find_element(By.ID, "history-link").click()
    wait(phone, 5).until(lambda d: _in_view(d, "history-title"))


def test_no_face_is_said_once_in_one_wording(own_server: str, own_driver, tmp_path: Path) -> None:
    wall = tmp_path / "wall.jpg"
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), (120, 140, 160)).save(buf, "JPEG")
    wall.write_bytes(buf.getvalue())
    own_driver.get(own_server + "/")
    own_driver.find_element(By.ID, "photo").send_keys(str(wall))
    wait(own_driver, 15).until(lambda d: visible(d, "form-error"))
    said = own_driver.find_element(By.ID, "form-error").text
    assert said.count(NO_FACE_TITLE) == 1 and said.count(NO_FACE_NEXT) == 1, said
    assert said.lower().count("face") == 2 and "animator" not in said.lower(), said
