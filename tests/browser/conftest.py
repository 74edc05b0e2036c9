"""The real product (`vivify up` on a free port) and Debian's headless Chromium driven by Selenium."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The animator behind `vivify up`; the product default is "portrait" (the CPU animator).
ANIMATOR = os.environ.get("VIVIFY_BROWSER_ANIMATOR", "portrait")
START_TIMEOUT_S = 60

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _vivify_command() -> list[str]:
    exe = Path(sys.executable).with_name("vivify")
    return [str(exe), "up"] if exe.exists() else [sys.executable, "-m", "app.cli", "up"]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with vivify_up(tmp_path_factory) as base:
        yield base


@contextmanager
def vivify_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`vivify up` on a free port with its own data (and so its own allowances); its base URL."""
    with vivify_up_in(tmp_path_factory.mktemp("vivify-data")) as base:
        yield base


@contextmanager
def vivify_up_in(data: Path) -> Iterator[str]:
    """`vivify up` on a free port with its data in `data`; its base URL (also for `make screenshots`)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Debian's chromium and chromedriver are needed: apt-get install chromium chromium-driver")
    port = _free_port()
    env = {
        **os.environ,
        "VIVIFY_DATA_DIR": str(data),
        "VIVIFY_ANIMATOR": ANIMATOR,
        "VIVIFY_ENV": "development",
        "VIVIFY_RATE_LIMIT": "1000/minute",
        "VIVIFY_LOG_LEVEL": "WARNING",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        # The checkout first: an editable install made before a package existed maps it as a namespace.
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    env.pop("VIVIFY_PORT", None)
    env.pop("VIVIFY_HOST", None)
    log = (data / "vivify-up.log").open("wb")
    proc = subprocess.Popen(_vivify_command(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                tail = (data / "vivify-up.log").read_text()[-3000:]
                pytest.fail(f"vivify up exited with {proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vivify up did not answer in {START_TIMEOUT_S} s")
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)  # uvicorn stops, then `vivify up` stops its worker
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def make_driver(*, javascript: bool = True, width: int = 1280, height: int = 900, webgl: bool = False):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio", "--lang=en-GB"):
        options.add_argument(arg)
    if webgl:  # WebGL2 in software (ANGLE on SwiftShader) for the live view; headless has none without it
        for arg in ("--enable-unsafe-swiftshader", "--use-angle=swiftshader"):
            options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument("--force-device-scale-factor=1")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def as_phone(driver, width: int = 390, height: int = 844) -> None:
    """A phone's viewport (headless Chromium's window is at least 500 px wide) and touch screen, so that
    `(pointer: coarse)` holds as on a real phone."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})


@pytest.fixture(scope="session")
def driver() -> Iterator[object]:
    browser = make_driver()
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server for one test file that sends jobs: the journey tests spend the address's daily allowance."""
    with vivify_up(tmp_path_factory) as base:
        yield base


@pytest.fixture(scope="module")
def own_driver() -> Iterator[object]:
    """A browser for one test file: the session's would keep polling a file's own server after it stops."""
    browser = make_driver()
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="session")
def portrait(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grace Hopper's portrait at its own 512×600: large enough that the job takes a few progress updates."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        img = Image.open(f).convert("RGB")
    img.thumbnail((640, 640))
    path = tmp_path_factory.mktemp("photos") / "grace-hopper.jpg"
    img.save(path, quality=90)
    return path


@pytest.fixture(scope="session")
def not_a_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "shopping-list.jpg"  # the name lies; the content decides
    path.write_text("eggs, milk, bread\n")
    return path
