"""The visitor's whole journey in headless Chromium against `vivify up`.

Upload a real portrait, read the photo check, choose a motion, watch the progress move, play the clip,
download it, animate again (in the same tab, then from the reloaded job page with another motion),
delete it; then the error paths (a file that is not a photo, a motion it does not understand, both in
the catalogue's words), and the plain-HTML path with JavaScript switched off. The README's screenshots
of the same journey come from `make screenshots` (tests/browser/screenshots.py).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from app.web.catalogue import DEFAULT_ERROR, ERRORS
from tests.browser.conftest import make_driver

pytestmark = pytest.mark.browser

JOB_TIMEOUT_S = 60


def wait(driver, seconds: float = 10):
    # A page that refreshes itself (no-JS job page) or re-renders can swap an element between finding
    # it and reading it: try again rather than fail.
    return WebDriverWait(
        driver, seconds, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    )


def visible(driver, element_id: str) -> bool:
    return driver.find_element(By.ID, element_id).is_displayed()


def browser_errors(driver) -> list[str]:
    """Console errors: a CSP violation, a failed module, an uncaught exception all land here."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def plan_said(line: str) -> str | None:
    """The motion's words in the page's plan line, planned ("Planned motion: ...") or done ("In this clip
    the person ...")."""
    match = re.fullmatch(r"Planned motion: (.+)|In this clip the person (.+)\.", line)
    return (match.group(1) or match.group(2)) if match else None


def api_fetch(driver, url: str, method: str = "GET") -> dict:
    """A same-origin fetch from the page (so the visitor cookie rides along)."""
    return driver.execute_async_script(
        """
        const [url, method, done] = arguments;
        fetch(url, {method, cache: "no-store"}).then(async (r) => {
          const bytes = new Uint8Array(await r.arrayBuffer());
          done({status: r.status, type: r.headers.get('content-type'),
                disposition: r.headers.get('content-disposition'), size: bytes.length,
                head: String.fromCharCode(...bytes.slice(4, 8))});
        }).catch((e) => done({error: String(e)}));
        """,
        url,
        method,
    )


def api_json(driver, url: str) -> dict:
    """A same-origin GET of a JSON answer from the page."""
    return driver.execute_async_script(
        "const done = arguments[1];"
        "fetch(arguments[0], {cache: 'no-store'}).then((r) => r.json()).then(done, (e) => done(String(e)));",
        url,
    )


def test_first_paint_is_fast_and_page_is_clean(server: str, driver) -> None:
    driver.get(server + "/")  # the browser's own first start is not the page's cost: measure a fresh load
    driver.get("about:blank")
    driver.get(server + "/")
    paint = (
        "const e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : null"
    )
    fcp = wait(driver, 5).until(lambda d: d.execute_script(paint))  # recorded just after the load event
    nav = driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return {response: n.responseEnd, dom: n.domContentLoadedEventEnd, load: n.loadEventEnd}"
    )
    assert fcp < 1000, f"first contentful paint {fcp:.0f} ms; navigation {nav}"
    print(f"first contentful paint {fcp:.0f} ms; navigation {nav}")
    # Every control has a label; the consent line is there; the allowance is explained.
    for input_id in ("photo", "photo-camera", "motion-text", "consent"):
        assert driver.find_elements(By.CSS_SELECTOR, f"label[for={input_id}]") or driver.execute_script(
            "return !!arguments[0].closest('label')", driver.find_element(By.ID, input_id)
        ), input_id
    assert "I have the right to animate this photo; I will not use it to deceive." in driver.page_source
    wait(driver).until(lambda d: "5 of 5" in d.find_element(By.ID, "quota").text)
    assert driver.find_element(By.ID, "photo").get_attribute("accept") == "image/*"
    assert driver.find_element(By.ID, "photo-camera").get_attribute("capture") == "environment"
    # Keyboard: Tab from the top reaches the photo picker, and focus is visible (an outline is drawn).
    seen = []
    for _ in range(5):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        active = driver.switch_to.active_element
        seen.append(active.get_attribute("id") or active.tag_name)
    assert "photo" in seen, seen
    driver.execute_script("document.getElementById('consent').focus()")
    outline = driver.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    assert browser_errors(driver) == []


def test_drag_and_drop_a_photo(server: str, driver) -> None:
    """A photo dropped on the box is taken like a picked one: preview, then the photo check's answer."""
    driver.get(server + "/")
    driver.execute_async_script(
        """
        const done = arguments[0];
        const canvas = document.createElement('canvas');
        canvas.width = 200; canvas.height = 240;
        const g = canvas.getContext('2d');
        g.fillStyle = '#c8a58a'; g.fillRect(0, 0, 200, 240);
        canvas.toBlob((blob) => {
          const dt = new DataTransfer();
          dt.items.add(new File([blob], 'dropped.jpg', {type: 'image/jpeg'}));
          const zone = document.getElementById('dropzone');
          for (const type of ['dragenter', 'dragover', 'drop']) {
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
          }
          done();
        }, 'image/jpeg', 0.9);
        """
    )
    wait(driver).until(lambda d: visible(d, "preview"))
    assert "dropped.jpg" in driver.find_element(By.ID, "dropzone-hint").text
    # A plain skin-coloured card has no face: the check says so before anything is sent.
    wait(driver, 15).until(
        lambda d: visible(d, "form-error") or d.find_element(By.ID, "check-score-text").text.endswith("/100")
    )
    if visible(driver, "form-error"):
        assert "face" in driver.find_element(By.ID, "form-error").text
    else:
        assert driver.find_element(By.ID, "check-score-text").text.endswith("/100")


def test_journey(server: str, driver, portrait: Path) -> None:
    driver.get(server + "/")
    wait(driver).until(lambda d: "of 5" in d.find_element(By.ID, "quota").text)

    # 1. Choose the photo: an immediate preview, then the photo check's score and tips.
    driver.find_element(By.ID, "photo").send_keys(str(portrait))
    wait(driver).until(lambda d: visible(d, "preview"))
    wait(driver, 20).until(lambda d: d.find_element(By.ID, "check-score-text").text.endswith("/100"))
    score = int(driver.find_element(By.ID, "check-score-text").text.split("/")[0])
    assert 0 <= score <= 100
    tips = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#check-tips li")]
    assert tips and all(tips), tips
    assert driver.find_element(By.ID, "check-verdict").text
    # What the default motion (auto) will do with this photo, in words.
    assert driver.find_element(By.CSS_SELECTOR, "input[name=motion][value=auto]").is_selected()
    wait(driver).until(lambda d: visible(d, "check-plan"))
    assert re.fullmatch(r"Planned motion: \w.+", driver.find_element(By.ID, "check-plan").text)

    # 2. Choose a motion (presets come with a description) and consent.
    presets = driver.find_elements(By.CSS_SELECTOR, "#motions .motion")
    assert len(presets) >= 3 and all(p.find_element(By.CLASS_NAME, "motion-desc").text for p in presets)
    driver.find_element(By.CSS_SELECTOR, "input[name=motion][value=smile]").find_element(
        By.XPATH, ".."
    ).click()
    assert driver.find_element(By.CSS_SELECTOR, "input[name=motion][value=smile]").is_selected()
    assert not visible(driver, "check-plan")  # it was planned for auto, not for this motion...
    wait(driver, 15).until(lambda d: visible(d, "check-plan"))  # ...and smile's own plan follows

    # Submitting without consent explains what to do, and sends nothing.
    driver.find_element(By.ID, "submit").click()
    wait(driver).until(lambda d: visible(d, "form-error"))
    assert "right to animate" in driver.find_element(By.ID, "form-error").text
    driver.find_element(By.ID, "consent").click()
    driver.find_element(By.ID, "submit").click()

    # 3. Waiting: the page moves to /jobs/<id> and the progress bar moves with the job's stages.
    wait(driver).until(lambda d: re.search(r"/jobs/[\w-]+$", d.current_url))
    job_id = driver.current_url.rsplit("/", 1)[1]
    wait(driver).until(lambda d: visible(d, "job"))
    seen: list[tuple[float, str, str]] = []
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        state = driver.execute_script(
            "const $ = (id) => document.getElementById(id);"
            "return [$('job-bar').value, $('job-stage').textContent, $('job').dataset.status]"
        )
        if not seen or seen[-1] != tuple(state):
            seen.append(tuple(state))
        if state[2] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.05)
    assert seen[-1][2] == "succeeded", seen
    progress = [p for p, _, status in seen if status in ("queued", "running")]
    stages = {stage for _, stage, _ in seen}
    assert len(set(progress)) >= 2 and progress == sorted(progress), seen  # it moved, and only forward
    running_words = ("Reading the photo", "Animating", "Developing", "Polishing", "Encoding", "Saving")
    assert any(s.startswith(running_words) for s in stages), stages

    first_job = api_json(driver, f"/api/v1/jobs/{job_id}")
    assert first_job["motion"] == "smile" and first_job["plan"]["description"], first_job
    # The clip is done: the plan now reads as what the clip did.
    assert plan_said(driver.find_element(By.ID, "job-plan").text) == first_job["plan"]["description"]
    assert driver.find_element(By.ID, "job-plan").text.startswith("In this clip")

    # 4. The result plays inline: looped, muted, inline, with a poster, and it really plays.
    wait(driver).until(lambda d: visible(d, "job-result"))
    video = driver.find_element(By.ID, "job-video")
    for attr in ("autoplay", "loop", "muted", "playsinline"):
        assert video.get_attribute(attr) is not None, attr
    assert video.get_attribute("poster").endswith(f"/api/v1/jobs/{job_id}/poster")
    wait(driver, 15).until(lambda d: d.execute_script("return arguments[0].readyState", video) == 4)
    t0 = driver.execute_script("return arguments[0].currentTime", video)
    time.sleep(0.6)
    t1 = driver.execute_script("return arguments[0].currentTime", video)
    assert t1 != t0 and not driver.execute_script("return arguments[0].paused", video), (t0, t1)
    assert driver.find_element(By.ID, "job-expires").text.startswith("Your photo and this clip are deleted")
    # The clip check's line, in the words the API gives it (clip_check.summary).
    check = api_json(driver, f"/api/v1/jobs/{job_id}")["clip_check"]
    line = driver.find_element(By.ID, "job-clip-check")
    assert check["passed"], check
    assert re.fullmatch(r"Likeness checked: same person \(0\.\d\d\)", line.text), line.text
    assert line.text == check["summary"] and "clip-check-failed" not in (line.get_attribute("class") or "")
    toggle = driver.find_element(By.ID, "play-toggle")  # a looping clip can be paused, and played again
    toggle.click()
    # The label follows the media element's `pause` event, which fires asynchronously.
    wait(driver).until(
        lambda d: d.execute_script("return arguments[0].paused", video) and toggle.text == "Play"
    )
    toggle.click()
    wait(driver).until(lambda d: not d.execute_script("return arguments[0].paused", video))
    # "My animations" lists it, ready, with a thumbnail that loaded.
    item = f"#history-list li[data-job-id='{job_id}']"
    wait(driver).until(
        lambda d: d.find_element(By.CSS_SELECTOR, item).get_attribute("data-status") == "succeeded"
    )
    thumb = driver.find_element(By.CSS_SELECTOR, f"{item} img")
    wait(driver).until(lambda d: d.execute_script("return arguments[0].naturalWidth", thumb) > 0)

    # 5. Download: an <a download> whose href answers an MP4 attachment.
    link = driver.find_element(By.ID, "download")
    assert link.get_attribute("download") is not None
    got = api_fetch(driver, link.get_attribute("href"))
    assert got["status"] == 200 and got["type"] == "video/mp4" and got["head"] == "ftyp", got
    assert "attachment" in (got["disposition"] or ""), got
    assert got["size"] > 1000

    # 6. Animate again: back to the form with the same photo, focus on the motion choice.
    driver.find_element(By.ID, "again").click()
    wait(driver).until(lambda d: visible(d, "start"))
    assert visible(driver, "preview") and not visible(driver, "job")
    assert driver.switch_to.active_element.get_attribute("name") in ("motion", "motion_text")
    driver.back()  # the browser's Back returns to the clip
    wait(driver).until(lambda d: visible(d, "job-result"))

    # 6b. The job page opened directly (a reload: no photo in memory) animates the stored photo again,
    # with another motion, and lands on the new job's page until its clip plays too.
    driver.get(f"{server}/jobs/{job_id}")
    wait(driver).until(lambda d: visible(d, "job-result"))
    driver.find_element(By.ID, "again").click()
    active = driver.switch_to.active_element
    assert active.get_attribute("name") in ("motion", "motion_text")
    assert active.find_element(By.XPATH, "ancestor::form").get_attribute("id") == "again-form"
    nod = driver.find_element(By.CSS_SELECTOR, "#again-form input[name=motion][value=nod]")
    nod.find_element(By.XPATH, "..").click()
    assert nod.is_selected()
    driver.find_element(By.ID, "again-submit").click()
    wait(driver).until(lambda d: re.search(r"/jobs/[\w-]+$", d.current_url) and job_id not in d.current_url)
    again_id = driver.current_url.rsplit("/", 1)[1]
    wait(driver, JOB_TIMEOUT_S).until(
        lambda d: d.find_element(By.ID, "job").get_attribute("data-status") in ("succeeded", "failed")
    )
    assert driver.find_element(By.ID, "job").get_attribute("data-status") == "succeeded"
    again_job = api_json(driver, f"/api/v1/jobs/{again_id}")
    assert again_job["motion"] == "nod" and again_job["photo"] == first_job["photo"], again_job
    video = driver.find_element(By.ID, "job-video")
    wait(driver, 15).until(lambda d: d.execute_script("return arguments[0].readyState", video) == 4)
    t0 = driver.execute_script("return arguments[0].currentTime", video)
    time.sleep(0.6)
    assert driver.execute_script("return arguments[0].currentTime", video) != t0
    driver.get(f"{server}/jobs/{job_id}")  # back to the first clip, which is still there
    wait(driver).until(lambda d: visible(d, "job-result"))

    # 7. Delete now: the job, its clip and its listing are gone.
    driver.find_element(By.ID, "delete").click()
    wait(driver).until(
        lambda d: visible(d, "start") and "Deleted" in d.find_element(By.ID, "form-error").text
    )
    assert not driver.find_elements(By.CSS_SELECTOR, item)
    assert browser_errors(driver) == []  # no CSP violation, failed module or uncaught error on the way
    assert api_fetch(driver, f"/api/v1/jobs/{job_id}")["status"] == 404
    assert api_fetch(driver, f"/api/v1/jobs/{job_id}/video")["status"] == 404


def test_the_motion_planned_at_the_photo_check_is_the_jobs(server: str, driver, portrait: Path) -> None:
    """The sentence shown after the photo check is the one the job then carries (its seed goes along)."""
    driver.get(server + "/")
    driver.find_element(By.ID, "photo").send_keys(str(portrait))
    wait(driver, 20).until(lambda d: visible(d, "check-plan"))
    before = driver.find_element(By.ID, "check-plan").text
    assert before.startswith("Planned motion: ") and len(before) > len("Planned motion: "), before
    driver.find_element(By.ID, "consent").click()
    driver.find_element(By.ID, "submit").click()
    wait(driver).until(lambda d: re.search(r"/jobs/[\w-]+$", d.current_url))
    wait(driver).until(lambda d: visible(d, "job-plan"))
    # "Planned motion: ..." while it is made, "In this clip the person ..." once done: the same words.
    assert plan_said(driver.find_element(By.ID, "job-plan").text) == plan_said(before)
    job_id = driver.current_url.rsplit("/", 1)[1]
    job = api_json(driver, f"/api/v1/jobs/{job_id}")
    assert job["motion"] == "auto" and before == f"Planned motion: {job['plan']['description']}"
    # A reload renders the same sentence from the server.
    driver.get(f"{server}/jobs/{job_id}")
    wait(driver).until(lambda d: visible(d, "job-plan"))
    assert plan_said(driver.find_element(By.ID, "job-plan").text) == plan_said(before)
    api_fetch(driver, f"/api/v1/jobs/{job_id}/cancel", "POST")  # the next tests need no queue ahead


def test_not_a_photo_explains_what_to_do(server: str, driver, not_a_photo: Path) -> None:
    driver.get(server + "/")
    driver.find_element(By.ID, "photo").send_keys(str(not_a_photo))
    wait(driver, 15).until(lambda d: visible(d, "form-error"))
    text = driver.find_element(By.ID, "form-error").text
    assert "not a photo we can use" in text and "JPEG, PNG or WebP" in text, text
    # Sending it anyway gets the same plain answer, not a job.
    driver.find_element(By.ID, "consent").click()
    driver.find_element(By.ID, "submit").click()
    wait(driver, 15).until(EC.text_to_be_present_in_element((By.ID, "form-error"), "not a photo we can use"))
    assert driver.current_url.rstrip("/") == server


def test_an_unknown_motion_is_explained_with_the_catalogues_words(
    server: str, driver, portrait: Path
) -> None:
    """words.js reads the page's catalogue: the API's unknown_motion gets its own words, not the catch-all."""
    driver.get(server + "/")
    # main.js marks <html> once it runs: these words come from the script, not the server's form page.
    wait(driver).until(lambda d: d.execute_script("return document.documentElement.classList.contains('js')"))
    driver.find_element(By.ID, "photo").send_keys(str(portrait))
    wait(driver, 20).until(lambda d: d.find_element(By.ID, "check-score-text").text.endswith("/100"))
    driver.find_element(By.ID, "motion-text").send_keys("do a backflip")
    driver.find_element(By.ID, "consent").click()
    driver.find_element(By.ID, "submit").click()
    wait(driver, 15).until(lambda d: visible(d, "form-error"))
    text = driver.find_element(By.ID, "form-error").text
    unknown = ERRORS["unknown_motion"]
    assert unknown["title"] in text and unknown["next"] in text, text
    assert DEFAULT_ERROR["title"] not in text and "Something went wrong" not in text, text
    assert driver.current_url.rstrip("/") == server  # refused in place: no job, no page load
    # The refused POST logs its 422 (as may earlier tests' refusals); anything else is a script error.
    assert [e for e in browser_errors(driver) if "Failed to load resource" not in e] == []


def test_works_without_javascript(server: str, portrait: Path) -> None:
    """The form posts, redirects to the job page, which refreshes itself until the clip is there."""
    browser = make_driver(javascript=False)
    try:
        browser.get(server + "/")
        # Scripts really are off: main.js, which marks <html> with the "js" class first thing, never ran.
        assert "js" not in (browser.find_element(By.TAG_NAME, "html").get_attribute("class") or "").split()
        browser.find_element(By.ID, "photo").send_keys(str(portrait))
        browser.find_element(By.CSS_SELECTOR, "input[name=motion][value=nod]").click()
        browser.find_element(By.ID, "consent").click()
        browser.find_element(By.ID, "submit").click()
        wait(browser).until(lambda d: re.search(r"/jobs/[\w-]+$", d.current_url))
        assert "refresh" in browser.page_source or browser.find_elements(By.ID, "job-video")
        wait(browser, JOB_TIMEOUT_S).until(
            lambda d: d.find_element(By.ID, "job").get_attribute("data-status") in ("succeeded", "failed")
        )
        assert browser.find_element(By.ID, "job").get_attribute("data-status") == "succeeded"
        video = browser.find_element(By.ID, "job-video")
        assert video.get_attribute("src").endswith("/video")
        assert browser.find_element(By.ID, "download").get_attribute("download") is not None
        # Delete without JavaScript: a plain form post.
        browser.find_element(By.ID, "delete").click()
        wait(browser).until(lambda d: "Deleted" in d.find_element(By.ID, "form-error").text)
    finally:
        browser.quit()


def test_progress_falls_back_to_polling(server: str, driver, portrait: Path) -> None:
    """A browser (or a proxy) without Server-Sent Events still sees the job through to the clip."""
    script = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.EventSource;"}
    )
    try:
        driver.get(server + "/")
        assert driver.execute_script("return typeof EventSource") == "undefined"
        driver.find_element(By.ID, "photo").send_keys(str(portrait))
        driver.find_element(By.ID, "consent").click()
        wait(driver, 20).until(lambda d: d.find_element(By.ID, "check-score-text").text.endswith("/100"))
        driver.find_element(By.ID, "submit").click()
        wait(driver, JOB_TIMEOUT_S).until(
            lambda d: d.find_element(By.ID, "job").get_attribute("data-status") in ("succeeded", "failed")
        )
        assert driver.find_element(By.ID, "job").get_attribute("data-status") == "succeeded"
        assert visible(driver, "job-result")
    finally:
        driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )
