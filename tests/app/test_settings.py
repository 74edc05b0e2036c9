"""Settings are validated at start: unsafe production settings refuse to start."""

import pytest
from pydantic import ValidationError

from app.core.config import DEV_SECRET_KEY, Settings


@pytest.mark.parametrize("secret", [DEV_SECRET_KEY, "", "short-but-not-default"])
def test_production_needs_a_real_secret(secret: str) -> None:
    with pytest.raises(ValidationError, match="VIVIFY_SECRET_KEY"):
        Settings(_env_file=None, env="production", secret_key=secret)


def test_production_starts_with_a_long_random_secret() -> None:
    assert Settings(_env_file=None, env="production", secret_key="k" * 48).is_production


def test_time_limits_must_sit_below_the_visibility_timeout() -> None:
    with pytest.raises(ValidationError, match="visibility_timeout"):
        Settings(
            _env_file=None, task_soft_time_limit_s=600, task_time_limit_s=700, broker_visibility_timeout_s=650
        )


def test_unset_time_limits_follow_the_animator() -> None:
    settings = Settings(_env_file=None)
    assert settings.time_limits(None) == (600, 660)  # an animator that states none
    assert settings.time_limits(1800) == (1800, 1860)  # Wan's family limit
    explicit = Settings(_env_file=None, task_soft_time_limit_s=100)
    assert explicit.time_limits(1800) == (100, 160)  # an operator's setting wins
    with pytest.raises(ValueError, match="visibility_timeout"):
        Settings(_env_file=None, broker_visibility_timeout_s=1800).time_limits(1800)
    assert Settings(_env_file=None, task_soft_time_limit_s="").task_soft_time_limit_s is None


def test_animator_options_are_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIVIFY_ANIMATOR_OPTIONS", '{"compile": true, "decode_chunk_size": 4}')
    assert Settings(_env_file=None).animator_options == {"compile": True, "decode_chunk_size": 4}


def test_an_empty_s3_endpoint_means_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-compose.worker.yml passes `${VIVIFY_S3_ENDPOINT_URL:-}` for AWS S3; boto3 refuses ''."""
    from app.core.storage import S3Store, make_store

    monkeypatch.setenv("VIVIFY_STORAGE_URL", "s3://vivify")
    monkeypatch.setenv("VIVIFY_S3_ENDPOINT_URL", "")
    monkeypatch.setenv("VIVIFY_S3_PUBLIC_ENDPOINT_URL", "")
    settings = Settings(_env_file=None)
    assert settings.s3_endpoint_url is None and settings.s3_public_endpoint_url is None
    assert isinstance(make_store(settings), S3Store)
