"""One Settings object, read from the environment (prefix VIVIFY_) once and validated at start."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_SECRET_KEY = "dev-insecure-change-me"
DEFAULT_TIME_LIMIT_S = 600  # an animator that states no time limit of its own (the CPU animators)
HARD_LIMIT_GRACE_S = 60  # the hard limit follows the soft one by this much unless set


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIVIFY_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("VIVIFY_HOST", "HOST"))
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("VIVIFY_PORT", "PORT"))
    data_dir: Path = Path("var")
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    log_level: str = "INFO"

    # Where things live. Empty means "embedded default under data_dir".
    database_url: str = ""
    broker_url: str = ""
    storage_url: str = ""
    migrate_on_start: bool = False
    # Database connections a process keeps pooled, and how many more it may open at a peak (unset:
    # 40 + 10 for SQLite, 10 + 20 for a server database). app.core.db.make_engine takes them.
    database_pool_size: int | None = Field(None, ge=1)
    database_max_overflow: int | None = Field(None, ge=0)

    # S3-compatible storage (storage_url = s3://bucket[/prefix])
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    presigned_url_ttl_s: int = Field(300, ge=30, le=3600)

    # Animation
    animator: str = "portrait"
    model: str | None = None
    # More animators a job may ask for (form field `animator`), comma-separated, e.g. "portrait,diffusion";
    # each is served by workers on its own queue (app.core.queue.queue_for). `model` belongs to `animator`.
    extra_animators: Annotated[list[str], NoDecode] = []
    device: str = "auto"
    # Extra keyword arguments for the animator, as JSON: speed settings of the diffusion animator
    # (e.g. {"compile": true, "cpu_offload": "model"}) or the portrait animator's max_side.
    animator_options: dict[str, Any] = {}

    # The clip check (models.clip_check) and its guard (models.guard). `fallback`: a failed clip is rendered
    # again (new seed, calmer), then by the portrait animator; `fail`: it fails the job (clip_check_failed);
    # `off`: it is measured and delivered whatever the figures say (the page then says it failed).
    clip_guard: Literal["fallback", "fail", "off"] = "fallback"
    clip_check_identity_max: float = Field(0.6, gt=0, le=2)  # fails at or above (dlib's same-person 0.6)
    clip_check_face_lost_max: float = Field(0.1, ge=0, le=1)  # share of sampled frames a face may be missing
    # Unset: K_STEADY times the largest measured on the portrait animator's clips (bench/RESULTS.md).
    clip_check_jitter_max: float | None = Field(None, gt=0)
    clip_check_flicker_max: float | None = Field(None, gt=0)
    clip_check_life_min: float | None = Field(None, ge=0)

    # Limits
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=10_000)
    min_side_px: int = Field(64, ge=16)
    # Uploads decoded at once in the web process (near-limit photos; a small photo needs no slot).
    decode_concurrency: int = Field(2, ge=1, le=64)
    # Memory all photo decodes of one web process may hold at once (estimated from each header).
    decode_memory_mb: int = Field(512, ge=16)
    # How long an upload may wait for its share of decode memory before a 503 with Retry-After.
    decode_wait_s: float = Field(5.0, gt=0, le=120)
    # Face work in the web process (app/core/face_pool.py): threads for every upload's face reading, and
    # for the live view's rig builds, which wait at most rig_wait_s (then 503), at most
    # rig_waiting_per_address at once per client address (then 429), and have their own rate limit.
    face_analysis_concurrency: int = Field(2, ge=1, le=8)
    rig_concurrency: int = Field(1, ge=1, le=8)
    rig_wait_s: float = Field(5.0, gt=0, le=120)
    rig_waiting_per_address: int = Field(2, ge=1)
    rig_rate_limit: str = "20/minute"
    # Deadline for receiving a whole upload body (a slowly trickled body gets a 408).
    upload_timeout_s: float = Field(60.0, gt=0, le=3600)
    free_animations_per_day: int = Field(5, ge=0)
    retention_hours: float = Field(24, gt=0)
    rate_limit: str = "120/minute"
    # Open /events streams at once per visitor (cookie) and per client address; more answer 429.
    event_streams_per_visitor: int = Field(4, ge=1)
    event_streams_per_address: int = Field(16, ge=1)
    # An open stream's slot is a lease renewed every third of this; a process that dies without giving
    # its slots back loses them after at most this long.
    event_stream_lease_s: float = Field(60.0, ge=1, le=3600)
    # Where the rate limits and stream caps above are counted, shared by every web process: a redis://
    # URL, or memory:// (each process counts alone). Unset: the broker's Redis when the broker is Redis,
    # else memory://. The decode and face pools protect one process's memory and stay per process.
    limits_url: str = ""
    # Comma-separated addresses or networks (VIVIFY_TRUSTED_PROXIES=10.0.0.0/8,127.0.0.1) whose
    # X-Forwarded-For is believed.
    trusted_proxies: Annotated[list[str], NoDecode] = []

    # Worker / queue. Unset time limits follow the animator: a diffusion family's work per clip (Wan's
    # 14 B model needs minutes), 600 s for the CPU animators; the hard limit comes a minute later.
    task_soft_time_limit_s: int | None = Field(None, ge=1)
    task_time_limit_s: int | None = Field(None, ge=1)
    broker_visibility_timeout_s: int = 3600
    task_max_retries: int = 3
    stale_job_after_s: int = 900
    # The web tier's /metrics is served only to a scraper that sends `Authorization: Bearer <token>`;
    # unset, it is not served at all (404).
    metrics_token: SecretStr | None = None
    # Prometheus metrics of a worker process on this port (0 = off). One port per process: with several
    # workers on one host give each its own (vivify worker --metrics-port).
    worker_metrics_port: int = Field(0, ge=0, le=65535)

    # Webhooks (a job's `webhook` URL gets signed start/progress/completed events)
    # Private, loopback and link-local targets are refused unless this is on (tests, closed networks).
    webhooks_allow_private: bool = False
    # Signing secret, "whsec_<base64>" as Standard Webhooks writes it, or any string. Unset: one derived
    # from secret_key (Settings.webhook_secret_text prints it for integrators).
    webhook_secret: SecretStr | None = None
    webhook_attempts: int = Field(5, ge=1, le=20)
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)
    # `progress` events at most this often per job.
    webhook_progress_interval_s: float = Field(2.0, ge=0)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        if isinstance(value, list):
            import ipaddress

            for p in value:
                ipaddress.ip_network(str(p).strip(), strict=False)  # ValueError names the bad entry
        return value

    @field_validator("extra_animators", mode="before")
    @classmethod
    def _split_animators(cls, value: object) -> object:
        if isinstance(value, str):
            value = [a.strip() for a in value.split(",") if a.strip()]
        return value

    @field_validator(
        "task_soft_time_limit_s",
        "task_time_limit_s",
        "clip_check_jitter_max",
        "clip_check_flicker_max",
        "clip_check_life_min",
        "metrics_token",
        "s3_endpoint_url",
        "s3_public_endpoint_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # compose passes `${VAR:-}` as an empty string

    @field_validator("rate_limit", "rig_rate_limit")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        from limits import parse

        parse(value)  # e.g. "120/minute"; raises ValueError otherwise
        return value

    @field_validator("limits_url")
    @classmethod
    def _check_limits_url(cls, value: str) -> str:
        if value and not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("VIVIFY_LIMITS_URL is memory://, redis://… or rediss://…")
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        secret = self.secret_key.get_secret_value()
        if self.env == "production" and (secret == DEV_SECRET_KEY or len(secret) < 32):
            raise ValueError("VIVIFY_SECRET_KEY must be a random value of 32+ characters in production")
        self.time_limits(None)  # explicit limits must already sit below the visibility timeout
        return self

    def time_limits(self, animator_limit_s: float | None) -> tuple[float, float]:
        """(soft, hard) seconds for one job of an animator that asks for `animator_limit_s` (None: none).

        Raises ValueError unless soft < hard < broker_visibility_timeout_s, so a redelivery never races a
        running task."""
        soft = self.task_soft_time_limit_s or animator_limit_s or DEFAULT_TIME_LIMIT_S
        hard = self.task_time_limit_s or soft + HARD_LIMIT_GRACE_S
        if not soft < hard < self.broker_visibility_timeout_s:
            raise ValueError(
                f"need task_soft_time_limit_s ({soft:g}) < task_time_limit_s ({hard:g}) < "
                f"broker_visibility_timeout_s ({self.broker_visibility_timeout_s}) so a redelivery never "
                "races a running task"
            )
        return float(soft), float(hard)

    # Derived values: the embedded defaults live under data_dir.
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'vivify.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def resolved_limits_url(self) -> str:
        if self.limits_url:
            return self.limits_url
        broker = self.resolved_broker_url
        return broker if broker.startswith(("redis://", "rediss://")) else "memory://"

    @property
    def broker_folder(self) -> Path:
        return (self.data_dir / "broker").resolve()

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or f"file://{(self.data_dir / 'objects').resolve()}"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def offered_animators(self) -> list[str]:
        """The animators a job may ask for; the first is the default."""
        return list(dict.fromkeys([self.animator, *self.extra_animators]))

    def model_for(self, animator: str) -> str | None:
        return self.model if animator == self.animator else None

    @property
    def webhook_signing_key(self) -> bytes:
        """The HMAC key of webhook signatures (bytes, as Standard Webhooks defines them)."""
        secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
        if secret.startswith("whsec_"):
            return base64.b64decode(secret.removeprefix("whsec_"))
        if secret:
            return secret.encode()
        key = self.secret_key.get_secret_value().encode()
        return hmac.new(key, b"vivify-webhook-signing-key", hashlib.sha256).digest()

    @property
    def webhook_secret_text(self) -> str:
        """The signing key as integrators are given it: whsec_<base64>."""
        return "whsec_" + base64.b64encode(self.webhook_signing_key).decode()


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
