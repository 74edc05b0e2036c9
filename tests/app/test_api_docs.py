"""The interactive API reference at /docs and /redoc: their files served from here, so they work with no
internet."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_docs_load_nothing_from_another_origin(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    sources = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text) + re.findall(r"url: '([^']+)'", r.text)
    assert "/docs/assets/swagger-ui-bundle.js" in sources and "/docs/assets/swagger-ui.css" in sources
    assert all(s.startswith("/") for s in sources), sources  # nothing from a CDN
    csp = r.headers["content-security-policy"]
    assert "http" not in csp and "script-src 'self' 'unsafe-inline'" in csp
    for asset, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css")):
        served = client.get(f"/docs/assets/{asset}")
        assert (
            served.status_code == 200
            and kind in served.headers["content-type"]
            and len(served.content) > 10_000
        )
    assert (
        "'unsafe-inline'" not in client.get("/").headers["content-security-policy"]
    )  # the page stays strict
    redoc = client.get("/redoc")
    assert redoc.status_code == 200 and "/docs/assets/redoc.standalone.js" in redoc.text
    assert "https://" not in redoc.text.split("<body>")[0]  # no fonts or scripts from a CDN
    assert client.get("/openapi.json").json()["info"]["title"] == "Vivify"
