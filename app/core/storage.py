"""One object-store interface: a local folder (embedded default) or any S3-compatible service (boto3).

Keys are chosen by the app (random job ids), never derived from an uploaded file name.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from app.core.config import Settings, get_settings


class StorageUnavailable(Exception):
    """The store could not be reached; callers answer 503 / retry."""


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def presigned_url(
        self, key: str, ttl_s: int, filename: str | None = None, *, head: bool = False
    ) -> str | None:
        """A short-lived download URL, or None when the store cannot make one (local folder).

        `head`: signed for HEAD instead of GET (a signature names its method)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A file path for streaming (local folder), else None."""
        ...

    def check(self) -> None:
        """Raise StorageUnavailable when the store cannot be used (readiness probe)."""
        ...

    def delete_under(self, prefix: str, older_than: datetime | None = None) -> int:
        """Delete every object whose key starts with `prefix` (a folder, ending in "/"), or only those
        last written before `older_than`; the number deleted."""
        ...


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a reader never sees half a file, a retried put simply replaces it.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def presigned_url(
        self, key: str, ttl_s: int, filename: str | None = None, *, head: bool = False
    ) -> str | None:
        return None

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageUnavailable(f"{self.root} is not writable")

    def keys(self) -> Iterator[str]:
        for p in self.root.rglob("*"):
            if p.is_file() and not p.name.startswith(".tmp-"):
                yield p.relative_to(self.root).as_posix()

    def delete_under(self, prefix: str, older_than: datetime | None = None) -> int:
        folder = self._path(prefix.rstrip("/"))
        cutoff = older_than.timestamp() if older_than is not None else None
        deleted = 0
        for p in sorted(folder.rglob("*"), reverse=True) if folder.is_dir() else []:
            if p.is_file() and (cutoff is None or p.stat().st_mtime < cutoff):
                p.unlink(missing_ok=True)
                deleted += 1
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()  # children first (reverse order): empty folders go too
        return deleted


class S3Store:
    def __init__(self, settings: Settings, bucket: str, prefix: str = "") -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        common = dict(
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret,
        )
        cfg = Config(
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=3,
            read_timeout=30,
            s3={"addressing_style": "path"},
        )
        self.client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, config=cfg, **common)
        # Presigned URLs are signed for the host the browser will use (may differ inside compose).
        public = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        self.signer = boto3.client("s3", endpoint_url=public, config=cfg, **common)

    def _key(self, key: str) -> str:
        key = _safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise KeyError(kwargs.get("Key")) from None
            if code.startswith("5") or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
                raise StorageUnavailable(str(exc)) from exc
            raise
        except BotoCoreError as exc:  # connection refused, timeouts, ...
            raise StorageUnavailable(str(exc)) from exc

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._call(self.client.put_object, Key=self._key(key), Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        return self._call(self.client.get_object, Key=self._key(key))["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self._call(self.client.head_object, Key=self._key(key))
            return True
        except KeyError:
            return False

    def delete(self, key: str) -> None:
        self._call(self.client.delete_object, Key=self._key(key))

    def presigned_url(
        self, key: str, ttl_s: int, filename: str | None = None, *, head: bool = False
    ) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename and not head:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        operation = "head_object" if head else "get_object"
        return self.signer.generate_presigned_url(operation, Params=params, ExpiresIn=ttl_s)

    def local_path(self, key: str) -> Path | None:
        return None

    def check(self) -> None:
        self._call(self.client.head_bucket)

    def keys(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                yield key[len(self.prefix) + 1 :] if self.prefix else key

    def delete_under(self, prefix: str, older_than: datetime | None = None) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        deleted = 0
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/")) + "/"):
                doomed = [
                    {"Key": obj["Key"]}
                    for obj in page.get("Contents", [])
                    if older_than is None or obj["LastModified"] < older_than
                ]
                if doomed:  # a page holds at most 1,000 keys, delete_objects' own limit
                    self._call(self.client.delete_objects, Delete={"Objects": doomed, "Quiet": True})
                    deleted += len(doomed)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(str(exc)) from exc
        return deleted


def make_store(settings: Settings) -> ObjectStore:
    url = urlparse(settings.resolved_storage_url)
    if url.scheme == "file":
        return LocalStore(Path(url.path))
    if url.scheme == "s3":
        return S3Store(settings, bucket=url.netloc, prefix=url.path)
    raise ValueError(f"unsupported storage URL {settings.resolved_storage_url!r} (file:// or s3://)")


@functools.lru_cache(maxsize=1)
def get_store() -> ObjectStore:
    return make_store(get_settings())


def photo_key(job_id: str) -> str:
    return f"jobs/{job_id}/photo.jpg"


def video_key(job_id: str) -> str:
    return f"jobs/{job_id}/clip.mp4"


def poster_key(job_id: str) -> str:
    return f"jobs/{job_id}/poster.jpg"


def gif_key(job_id: str) -> str:
    return f"jobs/{job_id}/clip.gif"
