"""The one filesystem layer: every file corpus-nlp reads or writes goes through fsspec.

Inputs, the actors' data files, the run's small state files and the lock all use `Storage`, so a
local path and an `s3://` URL behave the same. Delta commits go through delta-rs, which reads the
same standard settings (AWS_ENDPOINT_URL, AWS_REGION, credentials) from the environment.

What each kind of storage guarantees:
- Local disks: a file is durable before it is named: written under a temporary name, fsynced,
  renamed, and the folder fsynced. Exclusive create is O_EXCL.
- Object stores (S3 and S3-compatible): a PUT is atomic (an object is absent or complete) and
  durable once it returns. Exclusive create and compare-and-swap use S3's conditional writes
  (If-None-Match / If-Match); stores without them (or other fsspec filesystems) fall back to
  check-then-write, documented as best effort.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec

S3_PROTOCOLS = ("s3", "s3a")


class PreconditionFailed(Exception):
    """A conditional write found the object in another state than the one it was conditioned on."""


@dataclass(frozen=True)
class Version:
    """What a compare-and-swap is conditioned on: a local file's inode, or an object's ETag."""

    token: str


class Storage:
    """A root URL (local folder or fsspec URL) and the operations corpus-nlp needs under it."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.root = root.rstrip("/")
        self.local = "file" in _protocols(self.fs)
        self.s3 = any(p in S3_PROTOCOLS for p in _protocols(self.fs))

    # ---- paths
    def path(self, *parts: str) -> str:
        """Filesystem path (no scheme) of parts under the root."""
        return "/".join([self.root, *parts])

    def url_of(self, *parts: str) -> str:
        """URL of parts under the root, scheme kept (what delta-rs, polars and users are given)."""
        return "/".join([self.url, *parts])

    # ---- plain operations
    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    def list_files(self, *parts: str) -> list[str]:
        folder = self.path(*parts)
        try:
            return sorted(p for p in self.fs.find(folder) if not p.endswith("/"))
        except FileNotFoundError:
            return []

    def delete(self, path: str) -> None:
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass

    def delete_tree(self, *parts: str) -> None:
        folder = self.path(*parts)
        if self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)

    def makedirs(self, *parts: str) -> None:
        self.fs.makedirs(self.path(*parts), exist_ok=True)

    def read_bytes(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def read_json(self, *parts: str) -> Any | None:
        data = self.read_bytes(self.path(*parts))
        return None if data is None else json.loads(data)

    # ---- durable writes
    def write_bytes(self, path: str, data: bytes) -> None:
        """Write `path` so that it is either absent or complete and durable, never half-written."""
        if self.local:
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            fsync_dir(folder)
        else:
            self.fs.pipe_file(path, data)  # one PUT: atomic and durable once it returns

    def write_json(self, path: str, value: Any) -> None:
        self.write_bytes(path, json_bytes(value))

    def open_output(self, path: str):
        """A binary stream for a large file (Parquet); `finish_output` makes it durable."""
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return open(path, "wb")
        return self.fs.open(path, "wb")

    def finish_output(self, handle, path: str) -> None:
        """Close a stream from `open_output`; on a local disk fsync the file, then its folder."""
        if self.local:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            fsync_dir(os.path.dirname(path))
        else:
            handle.close()  # the upload completes here

    # ---- conditional writes (the run lock)
    def create_exclusive(self, path: str, data: bytes) -> Version | None:
        """Create `path` only if it does not exist; its version, or None if it existed."""
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return None
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
                inode = os.fstat(handle.fileno()).st_ino
            fsync_dir(os.path.dirname(path))
            return Version(str(inode))
        if self.s3:
            bucket, key = self._bucket_key(path)
            try:
                answer = self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            except FileExistsError:
                return None
            except OSError as exc:
                if _precondition(exc):
                    return None
                raise
            return Version(answer["ETag"])
        if self.fs.exists(path):  # no conditional create on this store: best effort
            return None
        self.fs.pipe_file(path, data)
        return self.version(path)

    def version(self, path: str) -> Version | None:
        """The version `path` has now, None if absent."""
        if self.local:
            try:
                return Version(str(os.stat(path).st_ino))
            except FileNotFoundError:
                return None
        try:
            info = self.fs.info(path, refresh=True) if self.s3 else self.fs.info(path)
        except FileNotFoundError:
            return None
        return Version(str(info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("size")))

    def replace_if(self, path: str, data: bytes, expected: Version) -> Version:
        """Replace `path` only if it still has version `expected`; raises PreconditionFailed if not.

        Local disks: the file is rewritten in place through its own inode (never a new file that
        could replace another run's lock); object stores: a conditional PUT (If-Match)."""
        if self.local:
            try:
                fd = os.open(path, os.O_WRONLY)
            except FileNotFoundError:
                raise PreconditionFailed(path) from None
            with os.fdopen(fd, "wb") as handle:
                if str(os.fstat(handle.fileno()).st_ino) != expected.token:
                    raise PreconditionFailed(path)
                handle.truncate(0)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            return expected
        if self.s3:
            bucket, key = self._bucket_key(path)
            try:
                answer = self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=expected.token)
            except (FileNotFoundError, FileExistsError):
                raise PreconditionFailed(path) from None
            except OSError as exc:
                if _precondition(exc):
                    raise PreconditionFailed(path) from None
                raise
            return Version(answer["ETag"])
        if self.version(path) != expected:
            raise PreconditionFailed(path)
        self.fs.pipe_file(path, data)
        return self.version(path) or expected

    def take_over(self, path: str, data: bytes, expected: Version) -> Version:
        """Replace `path`, still at version `expected`, by a new one with a new version (on a local
        disk a new file renamed over it, so whoever held the old inode sees it is gone); raises
        PreconditionFailed if it changed."""
        if not self.local:
            return self.replace_if(path, data, expected)
        if self.version(path) != expected:
            raise PreconditionFailed(path)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            inode = os.fstat(handle.fileno()).st_ino
        os.replace(tmp, path)
        fsync_dir(os.path.dirname(path))
        return Version(str(inode))

    def delete_if(self, path: str, expected: Version) -> bool:
        """Delete `path` if it still has version `expected` (checked just before; best effort on
        object stores, whose DELETE is unconditional)."""
        if self.version(path) != expected:
            return False
        self.delete(path)
        return True

    def _bucket_key(self, path: str) -> tuple[str, str]:
        bucket, _, key = path.partition("/")
        return bucket, key


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _precondition(exc: BaseException) -> bool:
    text = f"{exc} {exc.__cause__}"
    return "PreconditionFailed" in text or "pre-conditions" in text or "412" in text


def fsync_dir(folder: str) -> None:
    """Make a rename or a new file in `folder` survive a crash (POSIX: fsync the directory)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True, default=str) + "\n").encode()
