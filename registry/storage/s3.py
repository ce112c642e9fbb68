"""The ``s3`` storage driver: paths are objects of one bucket (under an optional prefix) of
an S3-compatible object store (AWS S3, Ceph RGW, MinIO), through boto3.

A writer turns appends into a multipart upload: bytes gather in memory until a part of at
least ``part_size`` (5 MiB or more, the S3 minimum for all but the last part) can be sent.
``close`` leaves what is not yet a part in a pending object (``_pending/<path>``) and
``state()`` records the multipart upload id, the parts' numbers, ETags and sizes, and the
pending byte count, so any process can resume the content from the state alone. ``commit``
sends the rest as the last part and completes the upload (content that never reached one
part is stored with a single ``PutObject``); an object appears whole or not at all.

Credentials come from the standard AWS chain (environment, shared config and credentials
files, instance metadata). Every botocore failure is translated: a missing key is
``PathNotFound``; an unknown bucket or refused credentials ``BackendMisconfigured`` naming
the setting; anything else (connection refused, timeouts, 5xx) ``BackendUnavailable``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# boto3 and botocore ship neither type hints nor a py.typed marker.
import boto3  # type: ignore[import-untyped]
import botocore.config  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]

from registry.storage.driver import FileInfo, FileWriter, Reader, check_path
from registry.storage.errors import (
    BackendMisconfigured,
    BackendUnavailable,
    InvalidOffset,
    PathNotFound,
)

MIN_PART = 5 * 1024 * 1024
PENDING = "_pending"
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_NO_BUCKET = {"NoSuchBucket"}
_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                "InvalidToken", "ExpiredToken"}


@dataclass(frozen=True)
class S3Options:
    """Where the bucket is: ``endpoint`` (empty: AWS), ``region``, ``bucket``, ``prefix``
    (a key prefix, no leading or trailing ``/``), ``path_style`` addressing, ``redirect``
    (blob GETs answered with a presigned URL) and ``part_size`` of multipart uploads."""

    bucket: str
    endpoint: str = ""
    region: str = "us-east-1"
    prefix: str = ""
    path_style: bool = False
    redirect: bool = False
    part_size: int = MIN_PART


def _code(exc: botocore.exceptions.ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get(
        "HTTPStatusCode", ""))


@contextlib.contextmanager
def _errors(options: S3Options, where: str) -> Iterator[None]:
    """Translate botocore's exceptions into storage errors naming ``where``."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        code = _code(exc)
        if code in _MISSING:
            raise PathNotFound(f"nothing stored at {where}") from None
        if code in _NO_BUCKET:
            raise BackendMisconfigured(
                "s3.bucket", f"bucket {options.bucket!r} does not exist at "
                f"{options.endpoint or 'AWS'}") from None
        if code in _CREDENTIALS:
            raise BackendMisconfigured(
                "s3 credentials", f"{options.endpoint or 'AWS'} refused the AWS credentials "
                f"for bucket {options.bucket!r} ({code})") from None
        raise BackendUnavailable(f"s3 {where}: {code}: {exc}") from None
    except botocore.exceptions.NoCredentialsError:
        raise BackendMisconfigured(
            "s3 credentials", "no AWS credentials found (AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, AWS_PROFILE)") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise BackendUnavailable(f"s3 {where}: {exc}") from None


class _S3Writer:
    """See the module docstring and :class:`~registry.storage.driver.FileWriter`."""

    def __init__(self, driver: S3Driver, path: str, upload_id: str,
                 parts: list[tuple[int, str, int]], buffer: bytearray) -> None:
        self._driver = driver
        self._path = path
        self._key = driver.key(path)
        self._upload_id = upload_id
        self._parts = parts
        self._buffer = buffer
        self._done = False

    @property
    def size(self) -> int:
        return sum(p[2] for p in self._parts) + len(self._buffer)

    def write(self, data: bytes) -> int:
        if self._done:
            raise ValueError(f"writer of {self._path} is closed")
        self._buffer += data
        if len(self._buffer) >= self._driver.options.part_size:
            self._flush_part()
        return len(data)

    def _flush_part(self) -> None:
        d = self._driver
        with _errors(d.options, self._path):
            if not self._upload_id:
                self._upload_id = d.client.create_multipart_upload(
                    Bucket=d.options.bucket, Key=self._key)["UploadId"]
            number = len(self._parts) + 1
            etag = d.client.upload_part(
                Bucket=d.options.bucket, Key=self._key, UploadId=self._upload_id,
                PartNumber=number, Body=bytes(self._buffer))["ETag"]
        self._parts.append((number, etag, len(self._buffer)))
        self._buffer = bytearray()

    def state(self) -> Mapping[str, str]:
        return {"upload_id": self._upload_id,
                "parts": json.dumps(self._parts, separators=(",", ":")),
                "size": str(self.size), "buffered": str(len(self._buffer))}

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        d = self._driver
        with _errors(d.options, self._path):
            if self._buffer:
                d.client.put_object(Bucket=d.options.bucket, Key=d.pending_key(self._path),
                                    Body=bytes(self._buffer))

    def commit(self) -> None:
        if self._done:
            raise ValueError(f"writer of {self._path} is closed")
        d = self._driver
        with _errors(d.options, self._path):
            if not self._parts:
                d.client.put_object(Bucket=d.options.bucket, Key=self._key,
                                    Body=bytes(self._buffer))
                if self._upload_id:
                    d.client.abort_multipart_upload(Bucket=d.options.bucket, Key=self._key,
                                                    UploadId=self._upload_id)
            else:
                if self._buffer:
                    self._flush_part()
                d.client.complete_multipart_upload(
                    Bucket=d.options.bucket, Key=self._key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                               for n, e, _ in self._parts]})
            d.client.delete_object(Bucket=d.options.bucket, Key=d.pending_key(self._path))
        self._done = True

    def cancel(self) -> None:
        self._done = True
        d = self._driver
        with _errors(d.options, self._path):
            if self._upload_id:
                with contextlib.suppress(PathNotFound), _errors(d.options, self._path):
                    d.client.abort_multipart_upload(Bucket=d.options.bucket, Key=self._key,
                                                    UploadId=self._upload_id)
            d.client.delete_object(Bucket=d.options.bucket, Key=d.pending_key(self._path))
            d.client.delete_object(Bucket=d.options.bucket, Key=self._key)


class S3Driver:
    """A :class:`~registry.storage.driver.StorageDriver` on an S3 bucket."""

    name = "s3"

    def __init__(self, options: S3Options, client: Any = None) -> None:
        if options.part_size < MIN_PART:
            raise BackendMisconfigured("s3.part_size", f"must be at least {MIN_PART} bytes")
        self.options = options
        if client is None:
            config = botocore.config.Config(
                region_name=options.region or None, signature_version="s3v4",
                s3={"addressing_style": "path" if options.path_style else "auto"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5, read_timeout=60, max_pool_connections=64)
            client = boto3.session.Session().client(
                "s3", endpoint_url=options.endpoint or None, config=config)
        self.client = client

    def key(self, path: str) -> str:
        """The object key of a driver path."""
        check_path(path)
        return f"{self.options.prefix}/{path}" if self.options.prefix else path

    def pending_key(self, path: str) -> str:
        """The object holding a paused writer's bytes that are not yet a part."""
        return self.key(f"{PENDING}/{path}")

    def check(self) -> None:
        """Reach the bucket once (``BackendMisconfigured``/``BackendUnavailable`` if not)."""
        with _errors(self.options, f"bucket {self.options.bucket!r}"):
            try:
                self.client.head_bucket(Bucket=self.options.bucket)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in ("404", "NotFound"):
                    raise BackendMisconfigured(
                        "s3.bucket", f"bucket {self.options.bucket!r} does not exist at "
                        f"{self.options.endpoint or 'AWS'}") from None
                raise
            except botocore.exceptions.EndpointConnectionError as exc:
                raise BackendMisconfigured("s3.endpoint", f"cannot connect: {exc}") from None

    def get_content(self, path: str) -> bytes:
        with _errors(self.options, path):
            body = self.client.get_object(Bucket=self.options.bucket, Key=self.key(path))["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

    def put_content(self, path: str, data: bytes) -> None:
        with _errors(self.options, path):
            self.client.put_object(Bucket=self.options.bucket, Key=self.key(path), Body=data)

    def reader(self, path: str, offset: int = 0) -> Reader:
        if offset < 0:
            raise InvalidOffset(f"cannot read {path} from {offset}")
        with _errors(self.options, path):
            try:
                response = self.client.get_object(Bucket=self.options.bucket,
                                                  Key=self.key(path), Range=f"bytes={offset}-")
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "InvalidRange":
                    raise
                size = self.stat(path).size
                if offset == size:
                    return io.BytesIO(b"")
                raise InvalidOffset(f"{path} holds {size} bytes; cannot read from "
                                    f"{offset}") from None
        return _Body(response["Body"], self.options, path)

    def writer(self, path: str, append: bool = False,
               state: Mapping[str, str] | None = None) -> FileWriter:
        check_path(path)
        if not append:
            return _S3Writer(self, path, "", [], bytearray())
        if state is None or "parts" not in state:
            raise PathNotFound(f"no resumable content at {path} (the writer state is missing)")
        parts = [(int(n), str(e), int(s)) for n, e, s in json.loads(state["parts"])]
        buffered = int(state.get("buffered", "0"))
        buffer = bytearray()
        if buffered:
            buffer = bytearray(self.get_content(f"{PENDING}/{path}"))
            if len(buffer) != buffered:
                raise InvalidOffset(f"{path}: the pending bytes hold {len(buffer)} bytes, "
                                    f"not {buffered}")
        return _S3Writer(self, path, state.get("upload_id", ""), parts, buffer)

    def stat(self, path: str) -> FileInfo:
        with _errors(self.options, path):
            try:
                head = self.client.head_object(Bucket=self.options.bucket, Key=self.key(path))
                return FileInfo(path, int(head["ContentLength"]),
                                head["LastModified"].timestamp())
            except botocore.exceptions.ClientError as exc:
                if _code(exc) not in _MISSING:
                    raise
            listing = self.client.list_objects_v2(Bucket=self.options.bucket,
                                                  Prefix=self.key(path) + "/", MaxKeys=1)
        if listing.get("KeyCount", 0) == 0:
            raise PathNotFound(f"nothing stored at {path}")
        return FileInfo(path, 0, 0.0, is_dir=True)

    def _prefix_of(self, path: str) -> str:
        if not path:
            return f"{self.options.prefix}/" if self.options.prefix else ""
        return self.key(path) + "/"

    def _strip(self, key: str) -> str:
        return key[len(self.options.prefix) + 1:] if self.options.prefix else key

    def list(self, path: str) -> list[str]:
        prefix = self._prefix_of(path)
        out: list[str] = []
        with _errors(self.options, path or "the top"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.options.bucket, Prefix=prefix, Delimiter="/")
            for page in pages:
                out.extend(self._strip(p["Prefix"]).rstrip("/")
                           for p in page.get("CommonPrefixes", ()))
                out.extend(self._strip(o["Key"]) for o in page.get("Contents", ()))
        out = sorted(p for p in out if not (p == PENDING or p.startswith(PENDING + "/")))
        if not out and path:
            raise PathNotFound(f"nothing stored below {path}")
        return out

    def walk(self, path: str) -> Iterator[FileInfo]:
        prefix = self._prefix_of(path)
        with _errors(self.options, path or "the top"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.options.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", ()):
                    rel = self._strip(obj["Key"])
                    if rel.startswith(PENDING + "/"):
                        continue
                    yield FileInfo(rel, int(obj["Size"]), obj["LastModified"].timestamp())

    def move(self, source: str, dest: str) -> None:
        src, dst = self.key(source), self.key(dest)
        with _errors(self.options, source):
            self.client.head_object(Bucket=self.options.bucket, Key=src)
            self.client.copy({"Bucket": self.options.bucket, "Key": src},
                             self.options.bucket, dst)
            self.client.delete_object(Bucket=self.options.bucket, Key=src)

    def delete(self, path: str) -> None:
        key = self.key(path)
        found = False
        with _errors(self.options, path):
            with contextlib.suppress(PathNotFound), _errors(self.options, path):
                self.client.head_object(Bucket=self.options.bucket, Key=key)
                self.client.delete_object(Bucket=self.options.bucket, Key=key)
                found = True
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.options.bucket, Prefix=key + "/")
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
                if keys:
                    found = True
                    self.client.delete_objects(Bucket=self.options.bucket,
                                               Delete={"Objects": keys, "Quiet": True})
            # Paused writers' bytes below the path go with it (a commit a crash cut short
            # after completing its multipart upload leaves them behind).
            pending = self.pending_key(path)
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.options.bucket, Prefix=pending):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", ())
                        if o["Key"] == pending or o["Key"].startswith(pending + "/")]
                if keys:
                    self.client.delete_objects(Bucket=self.options.bucket,
                                               Delete={"Objects": keys, "Quiet": True})
        if not found:
            raise PathNotFound(f"nothing stored at {path}")

    def redirect_url(self, path: str, expires: int = 1200) -> str | None:
        if not self.options.redirect:
            return None
        with _errors(self.options, path):
            url: str = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.options.bucket, "Key": self.key(path)},
                ExpiresIn=expires)
        return url


class _Body:
    """A streaming object body whose read errors are storage errors."""

    def __init__(self, body: Any, options: S3Options, path: str) -> None:
        self._body = body
        self._options = options
        self._path = path

    def read(self, size: int = -1, /) -> bytes:
        with _errors(self._options, self._path):
            try:
                return bytes(self._body.read(None if size < 0 else size))
            except (OSError, ValueError) as exc:
                raise BackendUnavailable(f"s3 {self._path}: reading failed: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
