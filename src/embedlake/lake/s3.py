"""Lake engine: any S3 API (AWS S3, MinIO, Ceph, moto's server), through s3fs.

The same code serves AWS and S3-compatible stores; only ``LakeSettings`` differ. Writes are atomic
by nature (an object appears whole when its PUT or multipart upload completes), so there is no
temporary-name dance as in ``local.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Any

import s3fs
from botocore.exceptions import BotoCoreError

from embedlake.config import LakeSettings
from embedlake.errors import ConfigError, LakeError, NotFound
from embedlake.lake.base import FsspecLake, translate_errors


class S3Lake(FsspecLake):
    """``s3://bucket/prefix``: keys live under ``prefix/`` in ``bucket``."""

    def __init__(self, url: str, settings: LakeSettings | None) -> None:
        settings = settings or LakeSettings(url=url)
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(f"lake url {url!r}: no bucket (expected s3://bucket/prefix)")
        self.bucket = bucket
        self._endpoint = settings.endpoint_url or "AWS"
        super().__init__(url, filesystem(settings), f"{bucket}/{prefix.strip('/')}")
        self._check_bucket()

    def _check_bucket(self) -> None:
        # Fail at open, naming the bucket, rather than with "object does not exist" on the first
        # write, or with listings that are silently empty.
        try:
            self._fs.call_s3("head_bucket", Bucket=self.bucket)
        except FileNotFoundError:
            raise LakeError(
                f"S3 bucket {self.bucket!r} does not exist at {self._endpoint} "
                f"(create it, or fix lake.url)"
            ) from None
        except PermissionError as exc:
            raise LakeError(
                f"S3 bucket {self.bucket!r} at {self._endpoint}: access denied ({exc}); "
                f"check the credentials and the bucket policy"
            ) from None
        except (OSError, BotoCoreError) as exc:
            raise LakeError(f"S3 bucket {self.bucket!r} at {self._endpoint}: {exc}") from exc

    def _translate(self, key: str) -> AbstractContextManager[None]:
        return self._errors(key)

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            with translate_errors(key):
                yield
        except BotoCoreError as exc:  # connection refused, timeouts: not OSErrors in botocore
            raise LakeError(f"lake object {key!r} at {self._endpoint}: {exc}") from exc
        except NotFound as exc:
            # s3fs reports a missing bucket as a missing file; say which it is
            if "NoSuchBucket" in repr(getattr(exc.__context__, "__cause__", None)):
                raise LakeError(
                    f"S3 bucket {self.bucket!r} does not exist at {self._endpoint}"
                ) from None
            raise

    def _write(self, key: str, fill: Callable[[IO[bytes]], object]) -> str | None:
        path = self._path(key)
        out = self._fs.open(path, "wb")
        try:
            fill(out)
            out.close()  # completes the upload: only now does the object appear
        except BaseException:
            # A context manager's close would commit what was written so far; abort instead, so
            # that a failed write leaves no object (and no orphaned multipart parts).
            out.discard()
            out.closed = True
            raise
        # S3's etag of a multipart upload is not an MD5 (and with SSE-KMS not even for a single
        # PUT): take the one S3 reports, as listings and info() will report it later.
        return self._etag(key, self._fs.info(path))

    def local_path(self, key: str) -> str | None:
        return None


def filesystem(settings: LakeSettings) -> Any:
    """An s3fs filesystem for these settings (also used for backups to s3:// locations)."""
    secret = settings.secret_access_key
    config: dict[str, Any] = {}
    if settings.endpoint_url:
        # S3-compatible servers (MinIO, Ceph, moto) expect path-style URLs, and many reject the
        # CRC checksums that recent botocore sends unless asked to.
        config = {
            "s3": {"addressing_style": "path"},
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
    return s3fs.S3FileSystem(
        # None, not "": boto's own credential chain (instance role, ~/.aws, AWS_* variables)
        key=settings.access_key_id or None,
        secret=secret.get_secret_value() if secret is not None else None,
        endpoint_url=settings.endpoint_url or None,
        client_kwargs={"region_name": settings.region} if settings.region else None,
        config_kwargs=config,
        # Objects above multipart_mb go up in parts of exactly that size (some S3-compatible
        # stores require equal parts); it is also the read-ahead block.
        default_block_size=settings.multipart_mb * 2**20,
        fixed_upload_size=True,
        # Other processes write to the bucket: a listing cache would hide their objects, and a
        # shared instance would share that cache and its event loop across settings.
        use_listings_cache=False,
        skip_instance_cache=True,
    )
