"""The embedded default never runs on the public development secret.

The secret signs visitors' cookies and (unless VIVIFY_WEBHOOK_SECRET is set) webhook signatures; the
default one is in this repository, so with it anyone could forge both. Outside production (where a
weak secret refuses to start), a command with no VIVIFY_SECRET_KEY uses a random key generated once
into <data_dir>/secret_key (mode 0600): `up`, `web`, `worker` and `webhook-secret` on one data folder
agree, and a restart keeps visitors' cookies valid.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from app.core.config import DEV_SECRET_KEY, Settings

log = logging.getLogger("vivify")

SECRET_FILE = "secret_key"
MIN_LENGTH = 32


def _read_or_create(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(tmp, path)  # atomic and never overwrites: two first starts agree on one key
            log.warning("no VIVIFY_SECRET_KEY: generated a random one in %s", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_text().strip()
    if len(secret) < MIN_LENGTH:
        raise ValueError(f"{path} holds a secret shorter than {MIN_LENGTH} characters; delete it or fix it")
    return secret


def with_local_secret(settings: Settings, *, export: bool = False) -> Settings:
    """`settings` with the data folder's generated secret in place of the development one.

    `export`: also put it in this process's environment, for the processes it starts or becomes."""
    if settings.secret_key.get_secret_value() != DEV_SECRET_KEY:
        return settings
    secret = _read_or_create(settings.data_dir / SECRET_FILE)
    if export:
        os.environ["VIVIFY_SECRET_KEY"] = secret
    return settings.model_copy(update={"secret_key": SecretStr(secret)})
