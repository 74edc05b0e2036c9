"""`make screenshots`: the README's screenshots (docs/screenshot-*.png), taken from the real page.

`vivify up` on a free port with fresh data, and Debian's headless Chromium at desktop (1366×900) and
phone (390×844, a touch screen) sizes, walk the visitor's journey: the empty form, the photo checked
(with the live view), a clip being made, the clip, and a file that is not a photo. Each shot is the
whole page (at most 2,400 px tall), saved as a small PNG.
"""

from __future__ import annotations

import base64
import io
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.conftest import ROOT, as_phone, make_driver, vivify_up_in

SIZES = {"desktop": (1366, 900), "phone": (390, 844)}
MAX_HEIGHT = 2400
MAX_BYTES = 400_000
JOB_TIMEOUT_S = 120
STATE = "return [document.getElementById('job').dataset.status, document.getElementById('job-bar').value]"


def grace_hopper(folder: Path) -> Path:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        img = Image.open(f).convert("RGB")
    path = folder / "grace-hopper.jpg"
    img.save(path, quality=90)
    return path


def not_a_photo(folder: Path) -> Path:
    path = folder / "shopping-list.jpg"
    path.write_text("eggs, milk, bread\n")
    return path


def shoot(driver, label: str, name: str, out: Path) -> Path:
    """The whole page as a PNG, quantised to 256 colours where a photo makes it large."""
    width = driver.execute_script("return window.innerWidth")
    height = min(driver.execute_script("return document.documentElement.scrollHeight"), MAX_HEIGHT)
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    img = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    path = out / f"screenshot-{label}-{name}.png"
    img.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        img.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"{path.relative_to(ROOT)}: {img.width}x{img.height}, {path.stat().st_size // 1024} KiB")
    return path


def journey(base: str, label: str, size: tuple[int, int], photo: Path, junk: Path, out: Path) -> None:
    driver = make_driver(width=size[0], height=size[1], webgl=True)
    if label == "phone":
        as_phone(driver, *size)
    wait = WebDriverWait(driver, 30, poll_frequency=0.05)
    try:
        driver.get(base + "/")
        wait.until(lambda d: "of 5" in d.find_element(By.ID, "quota").text)
        shoot(driver, label, "1-start", out)

        driver.find_element(By.ID, "photo").send_keys(str(photo))
        wait.until(lambda d: d.find_element(By.ID, "check-plan").is_displayed())
        wait.until(lambda d: d.execute_script("return !document.getElementById('live').hidden"))
        time.sleep(1.0)  # the live view's first frames
        driver.execute_script("window.scrollTo(0, 0)")
        shoot(driver, label, "2-photo-checked", out)

        # The longest clip, so that the shot catches it being made.
        Select(driver.find_element(By.ID, "duration")).select_by_value("10")
        driver.find_element(By.ID, "consent").click()
        driver.find_element(By.ID, "submit").click()
        deadline = time.monotonic() + JOB_TIMEOUT_S
        shot = False
        while time.monotonic() < deadline:
            status, progress = driver.execute_script(STATE)
            if not shot and status == "running" and progress >= 10:
                shoot(driver, label, "3-progress", out)
                shot = True
            if status in ("succeeded", "failed", "canceled"):
                break
            time.sleep(0.05)
        if status != "succeeded" or not shot:
            raise SystemExit(f"{label}: the clip ended {status}, progress shot taken: {shot}")
        video = driver.find_element(By.ID, "job-video")
        wait.until(lambda d: d.execute_script("return arguments[0].readyState", video) == 4)
        driver.execute_script("const v = arguments[0]; v.pause(); v.currentTime = 1.5", video)
        time.sleep(0.5)
        shoot(driver, label, "4-result", out)

        driver.get(base + "/")
        driver.find_element(By.ID, "photo").send_keys(str(junk))
        wait.until(lambda d: d.find_element(By.ID, "form-error").is_displayed())
        driver.execute_script("window.scrollTo(0, 0)")
        shoot(driver, label, "5-error", out)
    finally:
        driver.quit()


def main() -> int:
    out = ROOT / "docs"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo, junk = grace_hopper(folder), not_a_photo(folder)
        for label, size in SIZES.items():
            data = folder / f"data-{label}"  # a fresh server per size: its own allowance and history
            data.mkdir()
            with vivify_up_in(data) as base:
                journey(base, label, size, photo, junk, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
