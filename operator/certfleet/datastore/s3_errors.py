"""Translation of botocore's exceptions into the datastore's own error types.

Only this module and the S3 adapter know botocore; everything above them sees DatastoreError.
Messages are built here from the operation, the object's URI, the S3 error code and the HTTP
status, never from request bodies, so they cannot carry key material.
"""

from __future__ import annotations

from typing import NoReturn

from botocore.exceptions import (
    ChecksumError,
    ClientError,
    ConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
)

from certfleet.datastore.errors import (
    DatastoreConflictError,
    DatastoreError,
    DatastoreIntegrityError,
    DatastoreNotSupportedError,
    DatastoreUnavailableError,
)

# S3 codes that mean "the service is struggling", whatever HTTP status came with them.
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
    }
)
# Codes only, not the bare 404 status: NoSuchBucket is a 404 too, and a missing bucket must
# fail loudly rather than look like "nothing published yet".
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


def is_not_found(exc: ClientError) -> bool:
    return error_code(exc) in NOT_FOUND_CODES


def is_not_modified(exc: ClientError) -> bool:
    """botocore turns a 304 into a ClientError whose code is the string '304'."""
    return error_code(exc) == "304" or http_status(exc) == 304


def is_precondition_failed(exc: ClientError) -> bool:
    """412: If-Match / If-None-Match did not hold. 409 ConditionalRequestConflict: AWS's answer
    when a concurrent conditional write to the same key is in flight."""
    status = http_status(exc)
    return error_code(exc) in {"PreconditionFailed", "ConditionalRequestConflict"} or status in {
        409,
        412,
    }


def translate(exc: Exception, *, operation: str, uri: str) -> DatastoreError:
    """Map a boto exception to the datastore error a caller can act on."""
    if isinstance(exc, ClientError):
        code = error_code(exc) or "unknown"
        status = http_status(exc)
        what = f"{operation} {uri} failed: {code} (HTTP {status})"
        if is_precondition_failed(exc):
            return DatastoreConflictError(f"{what}: another writer changed it first")
        if code == "NotImplemented" or status == 501:
            # A provider without conditional writes: a configuration answer, not an outage.
            return DatastoreNotSupportedError(
                f"{what}: this S3 provider does not implement what certfleet needs "
                "(conditional writes: If-None-Match and If-Match)"
            )
        if code in _TRANSIENT_CODES or (status is not None and status >= 500):
            return DatastoreUnavailableError(what)
        return DatastoreError(what)
    if isinstance(exc, ChecksumError | FlexibleChecksumError):
        return DatastoreIntegrityError(f"{operation} {uri}: transfer checksum mismatch")
    if isinstance(exc, ConnectionError | HTTPClientError | IncompleteReadError):
        # These messages name the endpoint and the network fault, which helps and is safe.
        return DatastoreUnavailableError(f"{operation} {uri}: {exc}")
    # Credentials, configuration, parameter validation: not transient, needs a human. The
    # message is left out: ParamValidationError quotes parameter values, and Body is one.
    return DatastoreError(f"{operation} {uri}: {type(exc).__name__}")


def raise_translated(exc: Exception, *, operation: str, uri: str) -> NoReturn:
    """Raise the translated error; chain the original only where its text is known safe."""
    error = translate(exc, operation=operation, uri=uri)
    if isinstance(exc, ClientError | ConnectionError | HTTPClientError | IncompleteReadError):
        raise error from exc
    raise error from None
