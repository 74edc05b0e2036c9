"""The live view in headless Chromium (WebGL2 on SwiftShader) against `vivify up`.

The canvas at given channel values is the server's frame (tests/rig_frames.py's render_values) on the
face; the pointer turns the face toward itself; a recording played back and submitted becomes a clip
whose head follows it; the page without JavaScript or WebGL2 keeps its presets; the browser's
closeLoop is models.motion_curves.close_loop.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from skimage.metrics import structural_similarity

from models.motion import CHANNELS
from models.motion_curves import LOOP_SAMPLES, close_loop
from models.portrait.mesh import FoldGuard, MeshRig
from tests.browser.conftest import make_driver
from tests.browser.test_journey import JOB_TIMEOUT_S, browser_errors, visible, wait
from tests.rig_frames import render_values

pytestmark = pytest.mark.browser

SSIM_MIN = 0.9
POSES = [
    {"yaw": 10, "pitch": -5, "roll": 4, "smile": 0.8, "brow": 0.5, "blink": 0.6, "gaze_x": 0.5},
    {
        "yaw": -12,
        "pitch": 6,
        "roll": -1.5,
        "smile": 0.3,
        "brow": 1.0,
        "gaze_x": -0.7,
        "gaze_y": 0.4,
        "breath": 1,
    },
]
# A pose that squeezes the feathered edge of the hat: the mesh's fold guard (models/portrait/mesh.py
# FoldGuard, the same test in static/js/rig.js) scales its motion down, on both sides alike.
FOLD_EDGE_POSE = {"yaw": -12, "pitch": 6, "roll": -3, "smile": 0.3, "brow": 1.0, "breath": 1}


CAMERA_WATCH = """
window.__cameraRequests = 0;
if (navigator.mediaDevices) {
  const devices = navigator.mediaDevices;
  const ask = devices.getUserMedia && devices.getUserMedia.bind(devices);
  navigator.mediaDevices.getUserMedia = (...args) => { window.__cameraRequests += 1; return ask(...args); };
}
"""


@pytest.fixture(scope="module")
def server(own_server: str) -> str:
    """A server of its own (this file sends a job), under the name this file's fixtures use."""
    return own_server


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    """Chromium with software WebGL2 (the session's shared driver has none, as most visitors' do)."""
    browser = make_driver(webgl=True)
    # The live view uses no camera: count any request for one, from before the page's own scripts run.
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CAMERA_WATCH})
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def photo_rgb(portrait: Path) -> np.ndarray:
    return np.asarray(Image.open(portrait).convert("RGB"))


@pytest.fixture(scope="module")
def rig(server: str, portrait: Path) -> MeshRig:
    """The rig the server answers for the same photo (a fresh check: the rig is never stored)."""
    with portrait.open("rb") as f:
        r = httpx.post(
            f"{server}/api/v1/photo-check?rig=true", files={"photo": ("p.jpg", f, "image/jpeg")}, timeout=60
        )
    r.raise_for_status()
    assert r.json()["rig"], r.json()
    return MeshRig.from_json(r.json()["rig"])


def open_live(driver, server: str, photo: Path) -> None:
    driver.get(server + "/")
    wait(driver).until(lambda d: d.find_element(By.ID, "quota").text)  # main.js has run
    assert not visible(driver, "live")  # nothing before a photo is checked
    driver.find_element(By.ID, "photo").send_keys(str(photo))
    wait(driver, 30).until(
        lambda d: d.execute_script("return !!(window.vivifyLive && vivifyLive.state().ready)")
    )
    assert visible(driver, "live") and visible(driver, "live-canvas")


@pytest.fixture
def live(server: str, driver, portrait: Path):
    open_live(driver, server, portrait)
    return driver


def snapshot(driver) -> tuple[np.ndarray, dict[str, float]]:
    shot = driver.execute_script("return vivifyLive.snapshot()")
    rgb = np.frombuffer(base64.b64decode(shot["rgb"]), np.uint8).reshape(shot["height"], shot["width"], 3)
    return rgb, shot["values"]


def face_crop(rig: MeshRig, img: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = rig.faces[0].box
    return img[int(y0) : math.ceil(y1), int(x0) : math.ceil(x1)]


def ssim(rig: MeshRig, a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity(face_crop(rig, a), face_crop(rig, b), channel_axis=2))


def test_canvas_is_the_servers_frame(live, rig: MeshRig, photo_rgb: np.ndarray) -> None:
    driver = live
    assert photo_rgb.shape[:2] == (rig.height, rig.width)
    still, _ = snapshot(driver)
    assert ssim(rig, still, photo_rgb) > 0.97  # at rest, the canvas is the photo
    for pose in POSES:
        driver.execute_script("vivifyLive.setValues(arguments[0])", pose)
        canvas, values = snapshot(driver)
        assert all(abs(values[k] - v) < 1e-6 for k, v in pose.items()), values
        server_frame = render_values(rig, photo_rgb, values)
        same = ssim(rig, canvas, server_frame)
        moved = ssim(rig, canvas, photo_rgb)
        print(f"{pose}: SSIM canvas~server {same:.3f}, canvas~still photo {moved:.3f}")
        assert same >= SSIM_MIN, (pose, same)
        # The pose really moved the face, well beyond the canvas-server difference: the test can fail.
        assert moved < same - 0.1, (pose, same, moved)
        if pose.get("blink"):  # the fragment shader's lid and gaze edit, eye by eye
            for eye in rig.faces[0].eyes:
                x0, y0, x1, y1 = eye.box
                box = (slice(int(y0), math.ceil(y1)), slice(int(x0), math.ceil(x1)))
                eye_same = structural_similarity(canvas[box], server_frame[box], channel_axis=2)
                eye_moved = structural_similarity(canvas[box], photo_rgb[box], channel_axis=2)
                assert eye_same >= 0.95 and eye_moved < eye_same - 0.2, (eye_same, eye_moved)
    assert browser_errors(driver) == []


def test_fold_guard_agrees_near_its_threshold(live, rig: MeshRig, photo_rgb: np.ndarray) -> None:
    live.execute_script("vivifyLive.setValues(arguments[0])", FOLD_EDGE_POSE)
    canvas, values = snapshot(live)
    coeffs = np.array([values.get(ch, 0.0) for ch, _ in rig.rows], np.float32)
    assert FoldGuard(rig)(coeffs) < 1.0  # the guard does act at this pose
    assert live.execute_script("return vivifyLive.state().foldScale") == pytest.approx(FoldGuard(rig)(coeffs))
    assert ssim(rig, canvas, render_values(rig, photo_rgb, values)) >= SSIM_MIN


def point_at(driver, rig: MeshRig, dx_faces: float, dy_faces: float = 0.0, duration_ms: int = 250) -> None:
    """Move the pointer to face 0's centre + (dx, dy) face widths, in the canvas's CSS pixels."""
    canvas = driver.find_element(By.ID, "live-canvas")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    rect = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]", canvas
    )
    scale = rect[0] / rig.width
    face = rig.faces[0]
    x = (face.centre[0] + dx_faces * face.width) * scale - rect[0] / 2
    y = (face.centre[1] + dy_faces * face.width) * scale - rect[1] / 2
    ActionChains(driver, duration=duration_ms).move_to_element_with_offset(
        canvas, round(x), round(y)
    ).perform()


def settled(driver) -> dict[str, float]:
    # Software WebGL on a busy machine draws a few frames a second: the follow settles in a few frames.
    wait(driver, 20).until(lambda d: not d.execute_script("return vivifyLive.state().animating"))
    return driver.execute_script("return vivifyLive.values()")


def mean_flow_x(rig: MeshRig, before: np.ndarray, after: np.ndarray) -> float:
    import cv2

    a = cv2.cvtColor(face_crop(rig, before), cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(face_crop(rig, after), cv2.COLOR_RGB2GRAY)
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return float(flow[..., 0].mean())


def test_the_face_turns_toward_the_pointer(live, rig: MeshRig, photo_rgb: np.ndarray) -> None:
    driver = live
    still, _ = snapshot(driver)
    seen = {}
    for side in (1, -1):
        point_at(driver, rig, side * 1.0, 0.1)
        values = settled(driver)
        canvas, _ = snapshot(driver)
        flow = mean_flow_x(rig, still, canvas)
        seen[side] = (values["yaw"], values["gaze_x"], flow)
        # The face turns (and the eyes look) toward the pointer's side, within the limits.
        assert side * values["yaw"] > 5 and abs(values["yaw"]) <= 15, values
        assert side * values["gaze_x"] > 0.5, values
        assert side * flow > 0.3, seen  # measured on the pixels: the face moved toward the pointer
        assert ssim(rig, canvas, render_values(rig, photo_rgb, values)) >= SSIM_MIN
    # Away from the portrait, the face comes back to rest.
    ActionChains(driver).move_to_element(driver.find_element(By.ID, "live-title")).perform()
    values = settled(driver)
    assert abs(values["yaw"]) < 0.05 and abs(values["gaze_x"]) < 0.01, values
    # The keyboard does it too: focus the portrait, arrow right.
    driver.execute_script("document.getElementById('live-canvas').focus()")
    ActionChains(driver).send_keys("\ue014" * 4).perform()  # ArrowRight
    assert settled(driver)["yaw"] > 5
    print(f"pointer right/left: (yaw, gaze_x, mean face flow px) {seen}")


def test_a_recording_becomes_the_clip(live, server: str, rig: MeshRig) -> None:
    driver = live
    assert not visible(driver, "motion-recorded")  # nothing recorded yet
    Select(driver.find_element(By.ID, "duration")).select_by_value("5")  # a 5 s clip: record up to 5 s
    driver.find_element(By.ID, "live-record").click()
    assert driver.find_element(By.ID, "live-record").get_attribute("disabled")  # no Stop before 3 s
    assert "Recording" in driver.find_element(By.ID, "live-status").text
    for side in (-1.2, 1.2, -1.2, 1.2):  # sweep left and right for ~5 s: it stops by itself at 5 s
        point_at(driver, rig, side, 0.0, duration_ms=1200)
    wait(driver, 8).until(lambda d: d.execute_script("return vivifyLive.state().recorded") > 0)
    # A click meant for "Stop" that lands just after the automatic stop starts no new recording.
    driver.find_element(By.ID, "live-record").click()
    state = driver.execute_script("return vivifyLive.state()")
    assert state["recorded"] == 120 and not state["recording"], state
    assert "Recorded 5.0 seconds" in driver.find_element(By.ID, "live-status").text
    # The recording is the chosen motion at once, and the page says so.
    assert (
        visible(driver, "motion-recorded")
        and driver.find_element(By.ID, "motion-recorded-input").is_selected()
    )
    assert "“My recording” is now the chosen motion" in driver.find_element(By.ID, "live-status").text
    wait(driver, 3).until(lambda d: d.find_element(By.ID, "live-record").is_enabled())  # then Record again
    assert driver.find_element(By.ID, "live-record").text == "Record again"
    lengths = Select(driver.find_element(By.ID, "duration")).options
    offered = [o.get_attribute("value") for o in lengths if o.is_enabled()]
    assert offered == ["5", "6", "7", "8", "9", "10"]  # never a clip shorter than the recording
    curves = driver.execute_script("return vivifyLive.curves()")
    yaw = np.array(curves["channels"]["yaw"])
    assert curves["fps"] == 24 and set(curves["channels"]) == set(CHANNELS)
    assert len(json.dumps(curves)) < 8 * 1024  # rounded: far below the server's 48 KiB
    assert yaw.max() > 8 and yaw.min() < -8, yaw  # the sweep is in it

    # Play loops the recording as the clip will (close_loop applied).
    driver.find_element(By.ID, "live-play").click()
    played = []
    for _ in range(20):
        time.sleep(0.1)
        played.append(driver.execute_script("return vivifyLive.values().yaw"))
    assert driver.find_element(By.ID, "live-play").get_attribute("aria-pressed") == "true"
    assert len(set(played)) >= 3 and all(min(yaw) - 1e-3 <= v <= max(yaw) + 1e-3 for v in played), played
    driver.find_element(By.ID, "live-play").click()

    # "My recording" is the chosen motion (chosen again here, as a visitor might); the job carries the curves.
    assert visible(driver, "motion-recorded")
    driver.find_element(By.CSS_SELECTOR, "#motion-recorded label").click()
    assert driver.find_element(By.ID, "motion-recorded-input").is_selected()
    driver.find_element(By.ID, "consent").click()

    # Bad curves (forced here: the page never makes them) are refused with the server's own words.
    driver.execute_script("vivifyLive.curves = () => ({fps: 24, channels: {yaw: [1, 2, 3]}})")
    driver.find_element(By.ID, "submit").click()
    wait(driver).until(lambda d: visible(d, "form-error"))
    assert "yaw" in driver.find_element(By.ID, "form-error").text
    driver.execute_script("delete vivifyLive.curves")

    driver.find_element(By.ID, "submit").click()
    wait(driver).until(lambda d: "/jobs/" in d.current_url)
    job_id = driver.current_url.rsplit("/", 1)[1]
    wait(driver, JOB_TIMEOUT_S).until(
        lambda d: d.find_element(By.ID, "job").get_attribute("data-status") in ("succeeded", "failed")
    )
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    job = httpx.get(f"{server}/api/v1/jobs/{job_id}", cookies=cookies).json()
    assert job["status"] == "succeeded" and job["motion"] == "recorded", job
    # The page says what the clip did, summarised: a sweep left and right is each kind of move once, not
    # every turn and glance in turn.
    described = job["plan"]["description"]
    assert driver.find_element(By.ID, "job-plan").text == f"In this clip the person {described}."
    head_said = described.count("turns") + described.count("looks ")  # "turns the head ...", "looks around"
    assert head_said == 1 and described.count("glances") <= 1 and "then" not in described, described
    video = httpx.get(f"{server}/api/v1/jobs/{job_id}/video", cookies=cookies, timeout=30).content

    from models.face import FaceAnalyzer
    from models.video import read_frames

    frames = read_frames(video)
    assert len(frames) == len(yaw), (len(frames), len(yaw))
    analyzer = FaceAnalyzer()
    head = []
    for frame in frames:
        faces = analyzer.analyze(frame, mask=False).faces
        head.append(faces[0].pose()[0] if faces else np.nan)
    head = np.array(head)
    expected = np.array(close_loop(yaw))  # what the worker renders
    ok = ~np.isnan(head)
    assert ok.mean() > 0.9, head
    r = float(np.corrcoef(head[ok], expected[ok])[0, 1])
    print(f"clip head yaw vs recorded yaw: r = {r:.3f} over {ok.sum()} frames")
    assert r >= 0.8, (r, head.round(1).tolist(), expected.round(1).tolist())
    assert driver.execute_script("return window.__cameraRequests") == 0  # directed by pointer, no camera


def test_close_loop_is_the_servers(live) -> None:
    rng = np.random.default_rng(16)
    for n in (72, 97, 120):
        curve = rng.uniform(-15, 15, n).round(3).tolist()
        js = live.execute_async_script(
            "const [curve, samples, done] = arguments;"
            "import('/static/js/rig.js')"
            ".then((m) => done(m.closeLoop(curve, samples)), (e) => done(String(e)));",
            curve,
            LOOP_SAMPLES,  # the rig JSON's loop_samples
        )
        np.testing.assert_allclose(js, close_loop(curve), rtol=0, atol=1e-9)


def test_without_webgl2_the_presets_still_work(server: str, driver, portrait: Path) -> None:
    script = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "const get = HTMLCanvasElement.prototype.getContext;"
            "HTMLCanvasElement.prototype.getContext = function (kind, ...rest) {"
            "  return kind === 'webgl2' ? null : get.call(this, kind, ...rest); };"
        },
    )
    try:
        driver.get(server + "/")
        driver.find_element(By.ID, "photo").send_keys(str(portrait))
        wait(driver, 30).until(lambda d: visible(d, "live-fallback"))
        assert "WebGL2" in driver.find_element(By.ID, "live-fallback").text
        assert not visible(driver, "live-stage") and not visible(driver, "motion-recorded")
        wait(driver).until(lambda d: d.find_element(By.ID, "check-score-text").text.endswith("/100"))
        assert driver.find_elements(By.CSS_SELECTOR, "#motions input[name=motion][value=smile]")
        assert driver.find_element(By.ID, "motion-text").is_enabled()
    finally:
        driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )


def test_without_javascript_the_live_view_stays_hidden(server: str) -> None:
    browser = make_driver(javascript=False)
    try:
        browser.get(server + "/")
        assert not visible(browser, "live") and not visible(browser, "motion-recorded")
        recorded = browser.find_element(By.ID, "motion-recorded-input")
        assert recorded.get_attribute("disabled") is not None  # never sent by the plain form
        presets = browser.find_elements(By.CSS_SELECTOR, "#motions input[name=motion]:not([value=recorded])")
        assert len(presets) >= 3 and all(p.is_displayed() for p in presets)
        assert visible(browser, "motion-text")
    finally:
        browser.quit()
