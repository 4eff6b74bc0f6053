"""Errors of the certificate datastore.

Callers branch on the type, not on the message: the operator maps each type to a status
condition reason, the agent decides between "retry later" and "alert a human".
Messages name objects and reasons only; they never carry key material.
"""

from __future__ import annotations

from certfleet.core.errors import CertfleetError


class DatastoreError(CertfleetError):
    """Base of every datastore failure (also: access denied, missing bucket, bad credentials)."""


class DatastoreUnavailableError(DatastoreError):
    """The datastore could not be reached or answered with a server error: retry later."""

    retryable = True


class DatastoreNotSupportedError(DatastoreError):
    """The S3 provider answered 501 NotImplemented (e.g. no conditional writes): retrying
    cannot help; another provider or setting is needed."""


class DatastoreConflictError(DatastoreError):
    """Another writer changed the datastore first (a conditional write was refused)."""

    retryable = True  # the next attempt reads what the other writer wrote


class DatastoreIntegrityError(DatastoreError):
    """What the datastore holds is malformed, oversize, tampered with, or not ours to decrypt.

    ``pointer_etag`` is the ETag of the pointer that could not be followed, when the error
    came from reading the current certificate: a writer may replace that very pointer with
    a conditional write (If-Match), and nothing else.
    """

    pointer_etag: str | None = None


class UnknownMasterKeyError(DatastoreIntegrityError):
    """The private key was encrypted under a master key that none of the configured keys matches.

    A subclass so an operator can tell "key rotation went wrong" from "tampered with".
    """


class PointerAuthenticationError(DatastoreIntegrityError):
    """The pointer is not proven to be the operator's own, for this location: the base of the
    three ways it can fail (an agent reports each by its own reason)."""


class UnauthenticatedPointerError(PointerAuthenticationError):
    """The pointer carries no authentication tag (format version 1, or the tag removed)."""


class PointerMacError(PointerAuthenticationError):
    """The pointer's tag does not verify: a field was changed, or the tag forged."""


class PointerLocationError(PointerAuthenticationError):
    """The pointer is authentic but was written for another (cloudhost, build, domain): it
    was copied here."""


class DatastoreVerificationError(DatastoreError):
    """A freshly written revision did not read back as written; the pointer was not flipped."""
