"""Agents' S3 credentials (a CloudHost's agentCredentialsSecretRef) on the real S3 server:
versitygw accounts and a bucket policy that lets them read their CloudHost's prefix and
nothing else, and write nothing. tests/e2e/test_image.py runs the agent with such credentials."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from testbed.s3 import S3Bucket, S3Server

pytestmark = pytest.mark.testbed


def _refused(call: Callable[[], object]) -> str:
    with pytest.raises(ClientError) as refusal:
        call()
    return str(refusal.value.response["Error"]["Code"])


def test_agent_credentials_read_their_prefix_and_write_nothing(
    s3_server: S3Server, s3_bucket: S3Bucket
) -> None:
    bucket, owner = s3_bucket.name, s3_bucket.endpoint.client()
    ours, theirs = "certfleet/host-a/build-1/www", "certfleet/host-b/build-1/www"
    for folder in (ours, theirs):
        owner.put_object(Bucket=bucket, Key=f"{folder}/current.json", Body=b'{"revision": 1}')
    agent = s3_server.read_only_user(bucket, "certfleet/host-a").client()

    found = agent.get_object(Bucket=bucket, Key=f"{ours}/current.json")
    assert found["Body"].read() == b'{"revision": 1}'
    # The agent's conditional GET: unchanged is a 304, not a refusal.
    etag = found["ETag"]
    assert (
        _refused(
            lambda: agent.get_object(Bucket=bucket, Key=f"{ours}/current.json", IfNoneMatch=etag)
        )
        == "304"
    )
    # Nothing published yet reads as missing, which the agent reports as such.
    assert _refused(lambda: agent.get_object(Bucket=bucket, Key=f"{ours}/none.json")) in (
        "404",
        "NoSuchKey",
    )

    for call in (
        lambda: agent.put_object(Bucket=bucket, Key=f"{ours}/current.json", Body=b"{}"),
        lambda: agent.delete_object(Bucket=bucket, Key=f"{ours}/current.json"),
        lambda: agent.get_object(Bucket=bucket, Key=f"{theirs}/current.json"),
        lambda: agent.put_object(Bucket=bucket, Key=f"{theirs}/current.json", Body=b"{}"),
        lambda: agent.delete_bucket_policy(Bucket=bucket),
    ):
        assert _refused(call) == "AccessDenied"
    # The owner's copy is as it was.
    unchanged = owner.get_object(Bucket=bucket, Key=f"{ours}/current.json")["Body"].read()
    assert unchanged == b'{"revision": 1}'
