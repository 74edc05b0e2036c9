"""The HTML pages without a browser: strict-CSP-safe markup, the no-JavaScript form path, ownership."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from PIL import Image

from app.core.config import Settings
from app.web.main import create_app
from tests.browser.conftest import ROOT

TEMPLATES = sorted((ROOT / "templates").glob("*.html"))


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, migrate_on_start=True, animator="push-in")
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _jpeg(size: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (180, 120, 90)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_templates_need_no_inline_script_or_style(template: Path) -> None:
    """The CSP is script-src 'self'; style-src 'self': any inline script or style would be blocked.

    A JSON data block (<script type="application/json">, the words catalogue) is never executed, so the
    CSP does not apply to it."""
    html = template.read_text()
    scripts = re.findall(r"<script\b[^>]*>", html)
    inline = [s for s in scripts if not re.search(r"\bsrc=|\btype=\"application/json\"", s)]
    assert not inline, f"inline <script>: {inline}"
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html), "style attribute"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"


def test_static_js_sets_no_inline_styles() -> None:
    for js in (ROOT / "static" / "js").glob("*.js"):
        text = js.read_text()
        assert "innerHTML" not in text, f"{js.name}: build DOM nodes, never parse strings"
        assert 'setAttribute("style"' not in text and "cssText" not in text, js.name


def test_index_sets_cookie_csp_and_lists_presets(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert "vivify_visitor" in r.cookies
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert 'accept="image/*"' in r.text and 'capture="environment"' in r.text
    assert 'name="consent" value="true"' in r.text
    assert 'value="smile"' in r.text and "a slow, warm smile" in r.text
    assert "You can animate 5 of 5 free photos today." in r.text


def test_the_upload_form_offers_auto_first_and_chooses_it(client: TestClient) -> None:
    form = client.get("/").text.split('id="upload-form"')[1].split("</form>")[0]
    assert re.findall(r'name="motion" value="([\w-]+)"', form)[0] == "auto"
    assert re.findall(r'name="motion" value="([\w-]+)"\s+checked', form) == ["auto"]


def test_the_job_page_says_what_motion_was_planned(client: TestClient, portrait: Path) -> None:
    """Without JavaScript too: the job page is rendered with the plan's sentence."""
    client.get("/")
    r = client.post(
        "/jobs",
        files={"photo": ("me.jpg", portrait.read_bytes(), "image/jpeg")},
        data={"consent": "true"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:500]
    job = client.get(f"/api/v1/jobs/{r.headers['location'].rsplit('/', 1)[1]}").json()
    assert job["motion"] == "auto" and job["plan"]["description"], job
    sentence = escape(f"Planned motion: {job['plan']['description']}")
    page = client.get(r.headers["location"]).text
    assert re.search(rf'id="job-plan"\s*>{re.escape(sentence)}</p>', page), page[:3000]


def test_form_post_without_javascript_redirects_to_a_refreshing_job_page(client: TestClient) -> None:
    client.get("/")
    r = client.post(
        "/jobs",
        files={"photo": ("me.jpg", _jpeg(), "image/jpeg")},
        data={"consent": "true", "motion": "nod", "motion_text": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:500]
    location = r.headers["location"]
    assert re.fullmatch(r"/jobs/[\w-]+", location)
    page = client.get(location)
    assert page.status_code == 200
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page.text
    assert 'data-status="queued"' in page.text
    job_id = location.rsplit("/", 1)[1]
    assert client.get(f"/api/v1/jobs/{job_id}").json()["motion"] == "nod"
    # Cancel and delete work as plain form posts too.
    assert client.post(f"{location}/cancel", follow_redirects=False).status_code == 303
    assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "canceled"
    r = client.post(f"{location}/delete", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/?deleted=1"
    assert client.get(location).status_code == 404


def test_form_errors_come_back_as_the_form_with_what_to_do(client: TestClient) -> None:
    client.get("/")
    r = client.post(
        "/jobs", files={"photo": ("me.jpg", b"not a photo", "image/jpeg")}, data={"consent": "true"}
    )
    assert r.status_code == 415
    assert "That file is not a photo we can use." in r.text and 'id="upload-form"' in r.text
    r = client.post("/jobs", files={"photo": ("me.jpg", _jpeg(), "image/jpeg")}, data={"motion": "smile"})
    assert r.status_code == 422
    assert "right to animate this photo" in r.text
    assert re.search(r'value="smile"\s+checked', r.text)  # the visitor's choice survives the round trip


def test_cross_site_form_post_is_refused(client: TestClient) -> None:
    r = client.post(
        "/jobs",
        files={"photo": ("me.jpg", _jpeg(), "image/jpeg")},
        data={"consent": "true"},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert r.status_code == 403


def test_another_visitors_job_page_is_not_found(client: TestClient, tmp_path: Path) -> None:
    client.get("/")
    r = client.post(
        "/jobs",
        files={"photo": ("me.jpg", _jpeg(), "image/jpeg")},
        data={"consent": "true"},
        follow_redirects=False,
    )
    location = r.headers["location"]
    client.cookies.clear()
    assert client.get(location).status_code == 404
    assert client.post(f"{location}/delete", follow_redirects=False).status_code == 404


def _submit(client: TestClient, motion: str = "smile") -> str:
    client.get("/")
    r = client.post(
        "/jobs",
        files={"photo": ("me.jpg", _jpeg(), "image/jpeg")},
        data={"consent": "true", "motion": motion},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:500]
    return r.headers["location"]


def test_animate_again_without_javascript_posts_and_redirects_to_the_new_job(client: TestClient) -> None:
    location = _submit(client, motion="smile")
    page = client.get(location).text
    assert f'id="again-form" method="post" action="{location}/again"' in page
    assert 'for="again-motion-text"' in page and 'id="again-motion-text" name="motion_text"' in page
    again_form = page[page.index('id="again-form"') :].split("</form>")[0]
    checked = re.findall(r'value="([\w-]+)"\s+checked', again_form)
    assert len(checked) == 1 and checked[0] != "smile"  # another motion than this job's is offered first
    r = client.post(f"{location}/again", data={"motion": "nod", "motion_text": ""}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    new = r.headers["location"]
    assert re.fullmatch(r"/jobs/[\w-]+", new) and new != location
    new_id = new.rsplit("/", 1)[1]
    job = client.get(f"/api/v1/jobs/{new_id}").json()
    assert job["motion"] == "nod" and job["status"] == "queued"
    assert 'data-status="queued"' in client.get(new).text
    # A non-blank free-text motion wins over the preset, as on the upload form.
    r = client.post(
        f"{location}/again", data={"motion": "nod", "motion_text": "blink and smile"}, follow_redirects=False
    )
    assert client.get(f"/api/v1/jobs/{r.headers['location'].rsplit('/', 1)[1]}").json()["motion"] == (
        "blink and smile"
    )


def test_animate_again_refusals_rerender_the_job_page_with_what_to_do(client: TestClient) -> None:
    location = _submit(client)
    r = client.post(f"{location}/again", data={"motion_text": "juggle three oranges"})
    assert r.status_code == 422 and 'id="again-form"' in r.text
    assert "We did not understand the motion." in r.text and 'id="again-error" role="alert"' in r.text
    assert not re.search(r'id="again-error" role="alert"\s+hidden', r.text)
    job_id = location.rsplit("/", 1)[1]
    client.app.state.store.delete(f"jobs/{job_id}/photo.jpg")
    r = client.post(f"{location}/again", data={"motion": "nod"})
    assert r.status_code == 409 and "no longer stored" in r.text and "Upload the photo again" in r.text
    assert len(client.get("/api/v1/jobs").json()["jobs"]) == 1


def test_animate_again_is_refused_cross_site_and_for_another_visitor(client: TestClient) -> None:
    location = _submit(client)
    r = client.post(
        f"{location}/again",
        data={"motion": "nod"},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    client.cookies.clear()
    assert client.post(f"{location}/again", data={"motion": "nod"}, follow_redirects=False).status_code == 404


@pytest.mark.parametrize(
    ("status", "stage", "detail", "progress", "expected"),
    [
        ("queued", "queued", "", 0.0, "Waiting in line"),
        ("running", "analyzing", "reading the face", 0.02, "Reading the photo — 2%"),
        ("running", "animating", "12/25", 0.4, "Animating 12/25"),
        ("running", "encoding", "", 0.9, "Encoding the video — 90%"),
        ("succeeded", "done", "", 1.0, "Done"),
    ],
)
def test_stage_text_reads_like_a_person(
    status: str, stage: str, detail: str, progress: float, expected: str
) -> None:
    from app.web.rendering import stage_text

    job = {"status": status, "stage": stage, "stage_detail": detail, "progress": progress}
    assert stage_text(job) == expected


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_colours_meet_wcag_aa_contrast(scheme: str) -> None:
    css = (ROOT / "static" / "css" / "site.css").read_text()
    light = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", css.split("@media")[0]))
    dark_block = css[css.index("prefers-color-scheme: dark") :].split("}")[0]
    colours = (
        {**light, **dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", dark_block))}
        if scheme == "dark"
        else light
    )
    on_accent = "#1d1b19" if scheme == "dark" else "#ffffff"  # .button-primary text
    pairs = [
        (colours["text"], colours["card"]),
        (colours["text"], colours["bg"]),
        (colours["muted"], colours["card"]),
        (colours["muted"], colours["bg"]),
        (colours["muted"], colours["accent-soft"]),
        (colours["accent"], colours["card"]),
        (colours["accent"], colours["accent-soft"]),
        (on_accent, colours["accent"]),
        (colours["error"], colours["error-soft"]),
        (colours["ok"], colours["card"]),
        (colours["warn"], colours["card"]),
    ]
    for fg, bg in pairs:
        assert _contrast(fg, bg) >= 4.5, (scheme, fg, bg, round(_contrast(fg, bg), 2))


@pytest.mark.browser
def test_the_api_reference_renders_in_chromium_without_internet(server: str) -> None:
    """Chromium here reaches nothing outside this machine: /docs must draw the API from its own files."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser.conftest import make_driver

    driver = make_driver()
    try:
        driver.get(server + "/docs")
        title = WebDriverWait(driver, 20).until(
            EC.visibility_of_element_located((By.CSS_SELECTOR, ".swagger-ui .info .title"))
        )
        assert title.text.startswith("Vivify")
        operations = driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
        assert any("/api/v1/jobs" in op.text for op in operations)
    finally:
        driver.quit()
