"""How S3's failures map onto the datastore's error types.

moto answers conditional requests faithfully (see test_s3_store.py) but never throttles,
fails with 5xx or drops a connection. Here botocore's Stubber plays the server for those
answers, and botocore's own event hooks raise its network exceptions. No request leaves the
process.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.response import StreamingBody
from botocore.stub import Stubber

from certfleet.datastore import (
    DatastoreConflictError,
    DatastoreError,
    DatastoreIntegrityError,
    DatastoreLocation,
    DatastoreUnavailableError,
    MasterKey,
    PollStatus,
    S3Datastore,
)
from certfleet.datastore.errors import DatastoreNotSupportedError
from certfleet.datastore.s3_errors import translate

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LOCATION = DatastoreLocation("certfleet-test", "", "minio-1", "b1", "www.example.com")
URI = LOCATION.s3_uri_of(LOCATION.pointer_key)


@pytest.fixture
def client() -> S3Client:
    return boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # Should anything slip past the stubs, it meets a closed port on this machine.
        endpoint_url="http://127.0.0.1:9",
        # One attempt: these tests look at the mapping, not at botocore's retries.
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"}
        ),
    )


@pytest.fixture
def stubber(client: S3Client) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def store(client: S3Client) -> S3Datastore:
    return S3Datastore(client, [MasterKey(os.urandom(32))])


def client_error(code: str, status: int, operation: str = "GetObject") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "stubbed"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("SlowDown", 503, DatastoreUnavailableError),
        ("ServiceUnavailable", 503, DatastoreUnavailableError),
        ("InternalError", 500, DatastoreUnavailableError),
        ("BadGateway", 502, DatastoreUnavailableError),
        ("RequestTimeout", 400, DatastoreUnavailableError),
        ("AccessDenied", 403, DatastoreError),
        ("InvalidAccessKeyId", 403, DatastoreError),
        ("NoSuchBucket", 404, DatastoreError),
    ],
)
def test_read_errors(
    store: S3Datastore, stubber: Stubber, code: str, status: int, expected: type[Exception]
) -> None:
    stubber.add_client_error("get_object", service_error_code=code, http_status_code=status)
    with pytest.raises(DatastoreError) as caught:
        store.read_current(LOCATION)
    assert type(caught.value) is expected
    assert code in str(caught.value)
    assert URI in str(caught.value)


def test_missing_bucket_is_not_nothing_published(store: S3Datastore, stubber: Stubber) -> None:
    stubber.add_client_error("get_object", service_error_code="NoSuchBucket", http_status_code=404)
    with pytest.raises(DatastoreError, match="NoSuchBucket"):
        store.poll_pointer(LOCATION, None)


def test_missing_key_is_nothing_published(store: S3Datastore, stubber: Stubber) -> None:
    stubber.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    assert store.read_current(LOCATION) is None


def test_304_is_unchanged(store: S3Datastore, stubber: Stubber) -> None:
    # botocore reports a 304 as a ClientError whose code is the status, as a string.
    stubber.add_client_error(
        "get_object",
        service_error_code="304",
        http_status_code=304,
        expected_params={
            "Bucket": LOCATION.bucket,
            "Key": LOCATION.pointer_key,
            "IfNoneMatch": '"e1"',
        },
    )
    poll = store.poll_pointer(LOCATION, '"e1"')
    assert poll.status is PollStatus.UNCHANGED
    assert poll.etag == '"e1"'
    assert poll.pointer is None


def test_server_ignoring_if_none_match_still_reads_as_unchanged(
    store: S3Datastore, stubber: Stubber
) -> None:
    body = b"{}"
    stubber.add_response(
        "get_object",
        {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentLength": 2, "ETag": '"e1"'},
    )
    assert store.poll_pointer(LOCATION, "e1").status is PollStatus.UNCHANGED


def test_response_without_etag(store: S3Datastore, stubber: Stubber) -> None:
    body = b"{}"
    stubber.add_response(
        "get_object", {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentLength": 2}
    )
    with pytest.raises(DatastoreError, match="no ETag"):
        store.poll_pointer(LOCATION, None)


def test_a_broken_stream_is_unavailable(store: S3Datastore, stubber: Stubber) -> None:
    class BrokenBody(StreamingBody):
        def read(self, amt: int | None = None) -> bytes:
            raise ResponseStreamingError(error="connection reset")

    stubber.add_response(
        "get_object",
        {"Body": BrokenBody(io.BytesIO(b""), 100), "ContentLength": 100, "ETag": '"e"'},
    )
    with pytest.raises(DatastoreUnavailableError):
        store.read_current(LOCATION)


@pytest.mark.parametrize(
    "exception",
    [
        EndpointConnectionError(endpoint_url="https://s3.invalid"),
        ConnectTimeoutError(endpoint_url="https://s3.invalid"),
        ReadTimeoutError(endpoint_url="https://s3.invalid"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_network_failures_are_unavailable(
    client: S3Client, store: S3Datastore, exception: Exception
) -> None:
    calls: list[str] = []

    def fail(**_: Any) -> None:
        calls.append("sent")
        raise exception

    # before-send runs where the HTTP request would go out: nothing is sent.
    client.meta.events.register("before-send.s3.GetObject", fail)
    with pytest.raises(DatastoreUnavailableError, match="endpoint URL"):
        store.poll_pointer(LOCATION, None)
    assert calls  # the hook, not the network, answered


# -- the mapping itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (client_error("PreconditionFailed", 412, "PutObject"), DatastoreConflictError),
        (client_error("ConditionalRequestConflict", 409, "PutObject"), DatastoreConflictError),
        (client_error("SlowDown", 503), DatastoreUnavailableError),
        (client_error("AccessDenied", 403), DatastoreError),
        # A provider without conditional writes: configuration, never retried as an outage.
        (client_error("NotImplemented", 501, "PutObject"), DatastoreNotSupportedError),
        (FlexibleChecksumError(error_msg="mismatch"), DatastoreIntegrityError),
        (NoCredentialsError(), DatastoreError),
    ],
    ids=lambda value: getattr(value, "__name__", type(value).__name__),
)
def test_translate(exc: Exception, expected: type[DatastoreError]) -> None:
    error = translate(exc, operation="PutObject", uri=URI)
    assert type(error) is expected
    assert URI in str(error)
    assert error.retryable is (expected in (DatastoreConflictError, DatastoreUnavailableError))


def test_parameter_values_never_reach_the_message() -> None:
    # ParamValidationError quotes the offending value, which could be the key itself.
    secret = "PRIVATE-KEY-BYTES"
    exc = ParamValidationError(report=f"Invalid type for parameter Body, value: {secret}")
    assert secret in str(exc)
    assert secret not in str(translate(exc, operation="PutObject", uri=URI))
