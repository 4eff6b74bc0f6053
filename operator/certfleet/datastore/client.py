"""The one way certfleet builds a boto3 S3 client: bounded timeouts and retries everywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 15


def s3_client(
    *,
    endpoint: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    addressing_style: str = "path",
    ca_bundle: str | None = None,
    max_attempts: int = 3,
    max_pool_connections: int = 10,
) -> S3Client:
    """A client for one CloudHost's bucket. `max_attempts` counts botocore's own retries
    (standard mode): the operator retries a little more than an agent, whose poll that
    fails is simply tried again at the next interval. Keys None: boto3's own credential chain
    (an instance role). `max_pool_connections`: as many as threads use the client at once
    (beyond it each request opens a connection and throws it away). Raises ValueError for
    settings botocore refuses (an invalid endpoint).
    """
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        verify=ca_bundle or None,
        config=Config(
            s3={"addressing_style": "virtual" if addressing_style == "virtual" else "path"},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            max_pool_connections=max_pool_connections,
        ),
    )
    return client
