"""Web-tier settings are validated when read, so a bad value stops the start, not a request."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import Settings


def test_trusted_proxies_from_a_comma_separated_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIVIFY_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,::1")
    assert Settings(_env_file=None).trusted_proxies == ["10.0.0.0/8", "127.0.0.1", "::1"]


@pytest.mark.parametrize(
    "bad",
    [{"trusted_proxies": "10.0.0.0/33"}, {"trusted_proxies": ["proxy.local"]}, {"rate_limit": "lots"}],
)
def test_bad_web_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **bad)
