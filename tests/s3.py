"""A real S3 API on loopback for tests: moto's server mode (what s3fs's own tests use).

Every library corpus-nlp uses for S3 (s3fs/botocore, delta-rs, polars, pyarrow) reads the same
standard environment: AWS_ENDPOINT_URL, credentials, region, and AWS_ALLOW_HTTP for plain http.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {**S3_ENV, "AWS_ENDPOINT_URL": self.endpoint}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.process.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def bucket(self) -> str:
        name = f"corpus-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def apply_env(monkeypatch, server: S3Server) -> None:
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    import fsspec

    fsspec.config.conf.pop("s3", None)
    fsspec.AbstractFileSystem.clear_instance_cache() if hasattr(fsspec.AbstractFileSystem, "clear_instance_cache") else None
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except ImportError:
        pass
