"""The S3 datastore shared by the operator (writes) and the agents on every node (read).

Layout, pointer format and encryption are defined in `location`, `pointer` and `encryption`;
`s3_store` is the only module that talks to S3 (through an injected boto3 client).
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
from certfleet.datastore.s3_store import PointerPoll, PollStatus, S3Datastore, StoredCertificate

__all__ = [
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
