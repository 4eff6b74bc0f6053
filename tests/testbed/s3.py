"""A real S3 server on loopback: versitygw (Apache-2.0, built from its Go module)."""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from testbed import binaries
from testbed.processes import ServerProcess, Servers, free_port, tcp_open

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    region: str
    access_key: str
    secret_key: str

    def client(self, **config: Any) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}, **config),
        )

    def new_bucket(self) -> str:
        name = f"certfleet-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name


@dataclass(frozen=True)
class S3Bucket:
    endpoint: S3Endpoint
    name: str


class S3Server(Servers):
    def __init__(
        self, workdir: Path, access_log: Path | None = None, keep_alive: bool = True
    ) -> None:
        """`access_log`: where versitygw writes a line per request (the benchmarks count
        them); none by default. `keep_alive`: versitygw keeps connections open, as S3 does;
        without it (versitygw's own default) it answers every request with
        `Connection: close`, and every request costs a new connection."""
        self.workdir = workdir
        self.access_log = access_log
        self.keep_alive = keep_alive
        self.root = workdir / "s3-root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.iam = workdir / "iam"
        self.iam.mkdir(exist_ok=True)
        self.process: ServerProcess | None = None
        self._port = 0
        self.startup_seconds = 0.0
        self.endpoint = S3Endpoint(
            url="", region=REGION, access_key="certfleet-test", secret_key=secrets.token_hex(16)
        )

    def start(self) -> None:
        """Starts the server; after a stop, again on the same port and data (outage tests)."""
        port = self._port = self._port or free_port()
        self.process = ServerProcess(
            "versitygw",
            [
                str(binaries.go_program("versitygw")),
                f"--access={self.endpoint.access_key}",
                f"--secret={self.endpoint.secret_key}",
                f"--region={REGION}",
                f"--port=127.0.0.1:{port}",
                # Its own accounts and bucket policies, for read-only agent credentials.
                f"--iam-dir={self.iam}",
                "--quiet",
                *([f"--access-log={self.access_log}"] if self.access_log else []),
                *(["--keep-alive"] if self.keep_alive else []),
                "posix",
                str(self.root),
            ],
            self.workdir / "versitygw.log",
        )
        self.startup_seconds = self.process.wait_until(lambda: tcp_open("127.0.0.1", port))
        self.endpoint = S3Endpoint(
            f"http://127.0.0.1:{port}", REGION, self.endpoint.access_key, self.endpoint.secret_key
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def read_only_user(self, bucket: str, prefix: str) -> S3Endpoint:
        """A new account that may only read `bucket`'s objects under `prefix`/ (and list the
        bucket, so that a missing object reads as 404): an agent's credentials."""
        access_key, secret_key = f"agent-{secrets.token_hex(4)}", secrets.token_hex(16)
        subprocess.run(
            [
                str(binaries.go_program("versitygw")),
                "admin",
                f"--access={self.endpoint.access_key}",
                f"--secret={self.endpoint.secret_key}",
                f"--endpoint-url={self.endpoint.url}",
                "create-user",
                f"--access={access_key}",
                f"--secret={secret_key}",
                "--role=user",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        principal = {"AWS": [access_key]}
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": principal,
                    "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{bucket}/{prefix}/*"],
                },
                {
                    "Effect": "Allow",
                    "Principal": principal,
                    "Action": ["s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{bucket}"],
                },
            ],
        }
        self.endpoint.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        return S3Endpoint(self.endpoint.url, self.endpoint.region, access_key, secret_key)
