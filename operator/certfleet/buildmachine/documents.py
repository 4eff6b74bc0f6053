"""The build machine's input: the cluster's ManagedCertificate and CloudHost documents, in
multi-document YAML files, validated with the same parsers as the operator's (``api.spec``).

Everything is read and validated before anything is reconciled: one bad document stops the
run with a one-line error naming the file and the document, and nothing is published.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from certfleet.api.names import GROUP, TAKE_OVER_ANNOTATION
from certfleet.api.spec import (
    CertificateSpec,
    CloudHostConfig,
    InvalidSpecError,
    parse_certificate_spec,
    parse_cloudhost,
)
from certfleet.core.errors import CertfleetError

MAX_FILE_BYTES = 1024 * 1024
MAX_DOCUMENTS = 1000
_NAME_LIMIT = 253


class DocumentError(CertfleetError):
    """A file or a document of it cannot be used; the message names both."""


@dataclass(frozen=True)
class CertificateDocument:
    namespace: str
    name: str
    raw_spec: Mapping[str, Any]
    spec: CertificateSpec
    take_over_from: str | None = None  # its certfleet.io/take-over-from annotation

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Documents:
    certificates: tuple[CertificateDocument, ...]
    cloudhosts: Mapping[str, CloudHostConfig]


def load_documents(paths: Sequence[Path]) -> Documents:
    certificates: dict[str, CertificateDocument] = {}
    cloudhosts: dict[str, CloudHostConfig] = {}
    for path in paths:
        for index, document in enumerate(_documents(path), start=1):
            where = f"{path}: document {index}"
            kind, namespace, name = _identity(document, where)
            where = f"{where} ({kind} {name})"
            spec = document.get("spec")
            if not isinstance(spec, dict):
                raise DocumentError(f"{where}: spec must be a mapping")
            try:
                if kind == "CloudHost":
                    if name in cloudhosts:
                        raise DocumentError(f"{where}: CloudHost {name} is given twice")
                    cloudhosts[name] = parse_cloudhost(name, spec)
                    continue
                parsed = parse_certificate_spec(spec)
            except InvalidSpecError as error:
                raise DocumentError(f"{where}: {error}") from None
            certificate = CertificateDocument(
                namespace, name, spec, parsed, _take_over_from(document, where)
            )
            if certificate.key in certificates:
                raise DocumentError(f"{where}: {certificate.key} is given twice")
            certificates[certificate.key] = certificate
    for certificate in certificates.values():
        if certificate.spec.cloudhost not in cloudhosts:
            raise DocumentError(
                f"ManagedCertificate {certificate.key}: CloudHost {certificate.spec.cloudhost!r} "
                "is in none of the files given"
            )
    if not certificates:
        raise DocumentError(f"no ManagedCertificate in {', '.join(map(str, paths))}")
    return Documents(tuple(certificates.values()), cloudhosts)


def _documents(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise DocumentError(f"{path}: cannot be read: {error.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise DocumentError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        loaded = [d for d in yaml.safe_load_all(data) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise DocumentError(f"{path}: not valid YAML{line}") from None
    if len(loaded) > MAX_DOCUMENTS:
        raise DocumentError(f"{path}: more than {MAX_DOCUMENTS} documents")
    for index, document in enumerate(loaded, start=1):
        if not isinstance(document, dict):
            raise DocumentError(f"{path}: document {index} is not a mapping")
    return loaded


def _identity(document: Mapping[str, Any], where: str) -> tuple[str, str, str]:
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api_version, str) or api_version.split("/", 1)[0] != GROUP:
        raise DocumentError(f"{where}: apiVersion must be {GROUP}/..., not {api_version!r}")
    if kind not in ("ManagedCertificate", "CloudHost"):
        raise DocumentError(f"{where}: kind must be ManagedCertificate or CloudHost, not {kind!r}")
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    name, namespace = metadata.get("name"), metadata.get("namespace", "default")
    for field, value in (("name", name), ("namespace", namespace)):
        if not isinstance(value, str) or not 0 < len(value) <= _NAME_LIMIT:
            raise DocumentError(f"{where}: metadata.{field} must be a name")
    return str(kind), str(namespace), str(name)


def _take_over_from(document: Mapping[str, Any], where: str) -> str | None:
    metadata = document.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(annotations, dict) or TAKE_OVER_ANNOTATION not in annotations:
        return None
    value = annotations[TAKE_OVER_ANNOTATION]
    if not isinstance(value, str) or not 0 < len(value) <= 300:
        raise DocumentError(
            f"{where}: metadata.annotations.{TAKE_OVER_ANNOTATION} must name an owner"
        )
    return value
