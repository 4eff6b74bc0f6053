"""The Kubernetes resources certfleet reads, as validated Python values (pure: no I/O).

`ManagedCertificate` and `CloudHost` specs arrive as untrusted dicts; the CRD schema rejects
most bad input at `kubectl apply`, but the operator validates again before anything reaches a
file path, an S3 key or a CA.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

from certfleet.core.addresses import is_plain_http_to_remote
from certfleet.core.domains import validate_domain
from certfleet.core.errors import CertfleetError, InvalidDomainError
from certfleet.core.renewal import DEFAULT_RENEW_BEFORE

_CLOUDHOST_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_BUILD_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_SECRET_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?")
MIN_RENEW_BEFORE_SECONDS = 60
DEFAULT_REVISION_HISTORY_LIMIT = 10


class InvalidSpecError(CertfleetError, ValueError):
    """A resource's spec cannot be acted on; the message names the field."""


class GenerationMethod(StrEnum):
    AUTOMATIC = "AUTOMATIC"
    MANUAL = "MANUAL"


CHALLENGE_TYPES = ("HTTP-01", "DNS-01")
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class Dns01Settings:
    """The DNS provider that answers DNS-01 (`rfc2136` or a lexicon provider name) and the
    Secret with its credentials; `secret_namespace` None: the resource's own namespace."""

    provider: str
    secret_name: str
    secret_namespace: str | None


MAX_FALLBACK_SERVERS = 4
_EAB_KEY_ID = re.compile(r"[A-Za-z0-9._~:+/=-]{1,256}")


@dataclass(frozen=True, slots=True)
class AcmeSettings:
    server: str
    email: str | None
    challenge_type: str
    key_algorithm: str
    eab_key_id: str | None
    eab_hmac_secret: tuple[str, str] | None  # (Secret name, key) in the resource's namespace
    dns01: Dns01Settings | None = None  # per resource; else the CloudHost's
    # Tried in order after `server` when it keeps failing (spec.acme.fallbackServers).
    fallback_servers: tuple[str, ...] = ()

    @property
    def servers(self) -> tuple[str, ...]:
        """Every ACME server to order from, in order of preference."""
        return (self.server, *self.fallback_servers)

    def at_server(self, position: int) -> AcmeSettings:
        """These settings ordering from `servers[position]` alone. The external account
        binding belongs to `server` (the CA whose console issued it): a fallback registers
        without one."""
        if position == 0:
            return replace(self, fallback_servers=())
        return replace(
            self,
            server=self.servers[position],
            fallback_servers=(),
            eab_key_id=None,
            eab_hmac_secret=None,
        )


@dataclass(frozen=True, slots=True)
class CertificateSpec:
    domain: str  # normalised: lowercase A-labels
    alternative_names: tuple[str, ...]
    cloudhost: str
    build_identifier: str
    method: GenerationMethod
    renew_before: timedelta
    acme: AcmeSettings | None
    manual_secret_name: str | None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the certificate must cover, the domain first."""
        return (self.domain, *self.alternative_names)


def _field(spec: Mapping[str, Any], name: str, kind: type, required: bool = False) -> Any:
    value = spec.get(name)
    if value is None:
        if required:
            raise InvalidSpecError(f"spec.{name} is required")
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidSpecError(f"spec.{name} must be a {kind.__name__}")
    return value


def _name(field: str, value: str) -> str:
    try:
        return validate_domain(value)
    except InvalidDomainError as error:
        raise InvalidSpecError(f"{field}: {error}") from error


def parse_certificate_spec(spec: Mapping[str, Any]) -> CertificateSpec:
    domain = _name("spec.domain", _field(spec, "domain", str, required=True))
    alternatives: list[str] = []
    for index, value in enumerate(_field(spec, "alternativeNames", list) or []):
        if not isinstance(value, str):
            raise InvalidSpecError(f"spec.alternativeNames[{index}] must be a string")
        name = _name(f"spec.alternativeNames[{index}]", value)
        if name != domain and name not in alternatives:
            alternatives.append(name)

    cloudhost = _field(spec, "cloudhost", str, required=True)
    if not _CLOUDHOST_NAME.fullmatch(cloudhost):
        raise InvalidSpecError(f"spec.cloudhost {cloudhost!r} is not a CloudHost name")
    build = _field(spec, "buildIdentifier", str, required=True)
    if not _BUILD_IDENTIFIER.fullmatch(build) or ".." in build:
        raise InvalidSpecError(f"spec.buildIdentifier {build!r} is not a valid identifier")
    method_value = _field(spec, "generationMethod", str, required=True)
    try:
        method = GenerationMethod(method_value)
    except ValueError:
        raise InvalidSpecError(
            f"spec.generationMethod must be AUTOMATIC or MANUAL, not {method_value!r}"
        ) from None
    renew_seconds = _field(spec, "renewBeforeSeconds", int)
    renew_before = DEFAULT_RENEW_BEFORE
    if renew_seconds is not None:
        if renew_seconds < MIN_RENEW_BEFORE_SECONDS:
            raise InvalidSpecError(
                f"spec.renewBeforeSeconds must be at least {MIN_RENEW_BEFORE_SECONDS}"
            )
        renew_before = timedelta(seconds=renew_seconds)

    manual_secret = None
    manual = _field(spec, "manual", dict)
    if method is GenerationMethod.MANUAL:
        manual_secret = (manual or {}).get("secretName")
        if not isinstance(manual_secret, str) or not _SECRET_NAME.fullmatch(manual_secret):
            raise InvalidSpecError("spec.manual.secretName must name a Secret for MANUAL")
    acme = _acme_settings(_field(spec, "acme", dict) or {})
    return CertificateSpec(
        domain=domain,
        alternative_names=tuple(alternatives),
        cloudhost=cloudhost,
        build_identifier=build,
        method=method,
        renew_before=renew_before,
        acme=acme if method is GenerationMethod.AUTOMATIC else None,
        manual_secret_name=manual_secret,
    )


def _acme_settings(acme: Mapping[str, Any]) -> AcmeSettings:
    def text(name: str, default: str | None) -> str | None:
        value = acme.get(name, default)
        if value is not None and not isinstance(value, str):
            raise InvalidSpecError(f"spec.acme.{name} must be a string")
        return value

    binding = acme.get("externalAccountBinding") or {}
    if not isinstance(binding, Mapping):
        raise InvalidSpecError("spec.acme.externalAccountBinding must be an object")
    hmac_ref = binding.get("hmacKeySecretRef") or {}
    eab_secret, key_id = None, binding.get("keyID")
    if binding:
        name = hmac_ref.get("name") if isinstance(hmac_ref, Mapping) else None
        key = hmac_ref.get("key") if isinstance(hmac_ref, Mapping) else None
        if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
            raise InvalidSpecError(
                "spec.acme.externalAccountBinding.hmacKeySecretRef.name must name a Secret"
            )
        if not isinstance(key, str) or not re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", key):
            raise InvalidSpecError(
                "spec.acme.externalAccountBinding.hmacKeySecretRef.key must name a Secret key"
            )
        if not isinstance(key_id, str) or not _EAB_KEY_ID.fullmatch(key_id):
            raise InvalidSpecError(
                "spec.acme.externalAccountBinding.keyID must be the CA's key id: 1 to 256 "
                "printable characters without spaces"
            )
        eab_secret = (name, key)
    challenge_type = text("challengeType", "HTTP-01") or "HTTP-01"
    if challenge_type not in CHALLENGE_TYPES:
        raise InvalidSpecError(
            f"spec.acme.challengeType must be one of {', '.join(CHALLENGE_TYPES)}"
        )
    dns01 = acme.get("dns01")
    fallbacks = acme.get("fallbackServers") or []
    if not isinstance(fallbacks, list) or len(fallbacks) > MAX_FALLBACK_SERVERS:
        raise InvalidSpecError(
            f"spec.acme.fallbackServers must be a list of at most {MAX_FALLBACK_SERVERS} servers"
        )
    for index, fallback in enumerate(fallbacks):
        if not isinstance(fallback, str) or not fallback.strip() or len(fallback) > 2048:
            raise InvalidSpecError(
                f"spec.acme.fallbackServers[{index}] must name an ACME server (a CA name or "
                "an https:// directory URL)"
            )
    return AcmeSettings(
        server=text("server", "letsencrypt") or "letsencrypt",
        email=text("email", None),
        challenge_type=challenge_type,
        key_algorithm=text("keyAlgorithm", "ECDSA-P256") or "ECDSA-P256",
        eab_key_id=key_id if eab_secret else None,
        eab_hmac_secret=eab_secret,
        dns01=parse_dns01("spec.acme.dns01", dns01, own_namespace=True) if dns01 else None,
        fallback_servers=tuple(fallback.strip() for fallback in fallbacks),
    )


def parse_dns01(field: str, raw: object, own_namespace: bool) -> Dns01Settings:
    """`{provider, secretRef: {name[, namespace]}}`; a ManagedCertificate's Secret is in its
    own namespace, a CloudHost's names its namespace."""
    if not isinstance(raw, Mapping):
        raise InvalidSpecError(f"{field} must be an object")
    provider = raw.get("provider")
    if not isinstance(provider, str) or not _PROVIDER.fullmatch(provider):
        raise InvalidSpecError(
            f"{field}.provider must name a DNS provider (rfc2136, cloudflare, ...)"
        )
    ref = raw.get("secretRef")
    name = ref.get("name") if isinstance(ref, Mapping) else None
    if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
        raise InvalidSpecError(f"{field}.secretRef.name must name a Secret")
    namespace = ref.get("namespace") if isinstance(ref, Mapping) else None
    if own_namespace:
        namespace = None
    elif not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise InvalidSpecError(f"{field}.secretRef.namespace must name a namespace")
    return Dns01Settings(provider, name, namespace)


@dataclass(frozen=True, slots=True)
class ObjectRef:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class CloudHostConfig:
    name: str
    endpoint: str | None
    region: str
    bucket: str
    prefix: str
    addressing_style: str
    credentials: ObjectRef
    encryption_key: ObjectRef
    # Old revisions kept below the current one (for a rollback by a person); older ones go.
    revision_history_limit: int = DEFAULT_REVISION_HISTORY_LIMIT
    dns01: Dns01Settings | None = None
    # Master keys being rotated out: read (by key id), never used to seal anything new.
    previous_encryption_keys: tuple[ObjectRef, ...] = ()
    # Namespaces whose ManagedCertificates may use it, beyond the operator's own and those
    # labelled for it (api.tenancy); "*" admits every namespace.
    allowed_namespaces: tuple[str, ...] = ()
    # Roots trusted beside the system's (spec.trustBundle); None: the system roots alone.
    trust_bundle: TrustBundleRef | None = None


# -- spec.trustBundle (verified chains) -------------------------------------------------------

DEFAULT_TRUST_BUNDLE_KEY = "ca.crt"
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


@dataclass(frozen=True, slots=True)
class TrustBundleRef:
    """The PEM roots, beside the system's, that the CloudHost's certificates may chain to:
    the key ``key`` of the Secret ``secret`` (on a build machine, its file in SECRETS_DIR)."""

    secret: ObjectRef
    key: str = DEFAULT_TRUST_BUNDLE_KEY


def _trust_bundle(name: str, raw: object) -> TrustBundleRef | None:
    """`{secretRef: {namespace, name}, key}`; absent: the system roots alone."""
    if raw is None:
        return None
    field = f"CloudHost {name}: spec.trustBundle"
    if not isinstance(raw, Mapping):
        raise InvalidSpecError(f"{field} must be an object")
    ref = raw.get("secretRef")
    namespace = ref.get("namespace") if isinstance(ref, Mapping) else None
    secret = ref.get("name") if isinstance(ref, Mapping) else None
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise InvalidSpecError(f"{field}.secretRef.namespace must name a namespace")
    if not isinstance(secret, str) or not _SECRET_NAME.fullmatch(secret):
        raise InvalidSpecError(f"{field}.secretRef.name must name a Secret")
    key = raw.get("key", DEFAULT_TRUST_BUNDLE_KEY)
    if not isinstance(key, str) or not _SECRET_KEY.fullmatch(key) or key in (".", ".."):
        raise InvalidSpecError(f"{field}.key must be a key of the Secret")
    return TrustBundleRef(ObjectRef(namespace, secret), key)


# -- end of spec.trustBundle ------------------------------------------------------------------


def _ref(spec: Mapping[str, Any], field: str) -> ObjectRef:
    ref = spec.get(field)
    if not isinstance(ref, dict) or not ref.get("namespace") or not ref.get("name"):
        raise InvalidSpecError(f"CloudHost spec.{field} needs a namespace and a name")
    return ObjectRef(str(ref["namespace"]), str(ref["name"]))


def parse_cloudhost(name: str, spec: Mapping[str, Any]) -> CloudHostConfig:
    bucket = spec.get("bucket")
    if not isinstance(bucket, str) or not bucket:
        raise InvalidSpecError(f"CloudHost {name}: spec.bucket is required")
    endpoint = _endpoint(name, spec)
    return CloudHostConfig(
        name=name,
        endpoint=endpoint,
        region=str(spec.get("region") or "us-east-1"),
        bucket=bucket,
        prefix=str(spec.get("prefix", "certfleet")).strip("/"),
        addressing_style=str(spec.get("addressingStyle") or "path"),
        credentials=_ref(spec, "credentialsSecretRef"),
        encryption_key=_ref(spec, "encryptionKeySecretRef"),
        revision_history_limit=_history_limit(name, spec.get("revisionHistoryLimit")),
        dns01=parse_dns01(f"CloudHost {name}: spec.dns01", spec["dns01"], own_namespace=False)
        if spec.get("dns01")
        else None,
        previous_encryption_keys=_previous_keys(name, spec.get("previousEncryptionKeySecretRefs")),
        allowed_namespaces=_allowed_namespaces(name, spec.get("allowedNamespaces")),
        trust_bundle=_trust_bundle(name, spec.get("trustBundle")),
    )


def _endpoint(name: str, spec: Mapping[str, Any]) -> str | None:
    """The S3 endpoint; plain HTTP only to loopback unless the CloudHost says so explicitly."""
    endpoint = spec.get("endpoint") or None
    if endpoint is None:
        return None
    if not isinstance(endpoint, str) or not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", endpoint):
        raise InvalidSpecError(f"CloudHost {name}: spec.endpoint {endpoint!r} is not a URL")
    allowed = spec.get("allowInsecureHTTP", False)
    if not isinstance(allowed, bool):
        raise InvalidSpecError(f"CloudHost {name}: spec.allowInsecureHTTP must be true or false")
    if is_plain_http_to_remote(endpoint) and not allowed:
        raise InvalidSpecError(
            f"CloudHost {name}: spec.endpoint {endpoint!r} is plain http:// to a host other "
            "than this machine: use https://, or set spec.allowInsecureHTTP: true to accept "
            "that the datastore's traffic can be read and changed on the way"
        )
    return endpoint


MAX_PREVIOUS_KEYS = 8


def _previous_keys(name: str, value: object) -> tuple[ObjectRef, ...]:
    """spec.previousEncryptionKeySecretRefs: the master keys a rotation is retiring."""
    if value is None:
        return ()
    field = "previousEncryptionKeySecretRefs"
    if not isinstance(value, list) or len(value) > MAX_PREVIOUS_KEYS:
        raise InvalidSpecError(
            f"CloudHost {name}: spec.{field} must be a list of at most {MAX_PREVIOUS_KEYS} "
            "Secret references"
        )
    return tuple(_ref({field: item}, field) for item in value)


def _allowed_namespaces(name: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 1000:
        raise InvalidSpecError(f"CloudHost {name}: spec.allowedNamespaces must be a list")
    for entry in value:
        if not isinstance(entry, str) or not (entry == "*" or _NAMESPACE.fullmatch(entry)):
            raise InvalidSpecError(
                f"CloudHost {name}: spec.allowedNamespaces holds namespace names or '*', "
                f"not {entry!r}"[:300]
            )
    return tuple(value)


def _history_limit(name: str, value: object) -> int:
    if value is None:
        return DEFAULT_REVISION_HISTORY_LIMIT
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1000:
        raise InvalidSpecError(
            f"CloudHost {name}: spec.revisionHistoryLimit must be a whole number from 0 to 1000"
        )
    return value


def cache_secret_name(spec: CertificateSpec) -> str:
    """The cluster cache Secret of (domain, cloudhost, build identifier): a stable name, so
    a fresh operator finds it with one GET; readable, and unique by the digest."""
    identity = f"{spec.domain}\n{spec.cloudhost}\n{spec.build_identifier}".encode()
    digest = hashlib.sha256(identity).hexdigest()[:10]
    readable = spec.domain.replace("*", "wildcard")[:200].strip(".-")
    return f"certfleet-{readable}-{digest}"
