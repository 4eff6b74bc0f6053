"""The S3 datastore shared by the operator (writes) and the agents on every node (read).

Layout, pointer format and encryption are defined in `location`, `pointer` and `encryption`;
`protocol` is the Datastore Protocol its callers depend on; `s3_store` is the only module
that talks to S3 (through a boto3 client from `client`), `memory` the in-memory stand-in for
unit tests of callers.
"""

from certfleet.datastore.encryption import MasterKey, envelope_decrypt, envelope_encrypt
from certfleet.datastore.errors import (
    DatastoreConflictError,
    DatastoreError,
    DatastoreIntegrityError,
    DatastoreUnavailableError,
    DatastoreVerificationError,
    UnknownMasterKeyError,
)
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.pointer import Pointer, parse_pointer
from certfleet.datastore.protocol import Datastore, PointerPoll, PollStatus, StoredCertificate
from certfleet.datastore.s3_store import S3Datastore

__all__ = [
    "Datastore",
    "DatastoreConflictError",
    "DatastoreError",
    "DatastoreIntegrityError",
    "DatastoreLocation",
    "DatastoreUnavailableError",
    "DatastoreVerificationError",
    "MasterKey",
    "Pointer",
    "PointerPoll",
    "PollStatus",
    "S3Datastore",
    "StoredCertificate",
    "UnknownMasterKeyError",
    "envelope_decrypt",
    "envelope_encrypt",
    "parse_pointer",
]
