"""Which namespaces may use a CloudHost (pure: the namespace's labels are passed in).

A CloudHost's datastore is served by every node of its fleet, so not every namespace of the
cluster may publish to it. A ManagedCertificate may use a CloudHost when its namespace is

- the operator's own namespace;
- listed in the CloudHost's ``spec.allowedNamespaces`` (``"*"``: every namespace); or
- labelled ``cloudhost.certfleet.io/<cloudhost>: allowed`` (labelling a namespace takes a
  cluster-wide right, which a namespace's own users normally lack).
"""

from __future__ import annotations

from collections.abc import Mapping

from certfleet.api.names import CLOUDHOST_NAMESPACE_LABEL_PREFIX, NAMESPACE_ALLOWED_VALUE
from certfleet.api.spec import CloudHostConfig

ALL_NAMESPACES = "*"


def namespace_label(cloudhost: str) -> str:
    """The label that admits a namespace to ``cloudhost`` (its value: ``allowed``)."""
    return f"{CLOUDHOST_NAMESPACE_LABEL_PREFIX}{cloudhost}"


def admits(
    cloudhost: CloudHostConfig,
    namespace: str,
    operator_namespace: str,
    labels: Mapping[str, str] | None,
) -> bool:
    """Whether `namespace` may use `cloudhost`; `labels` None: not read (yet)."""
    listed = cloudhost.allowed_namespaces
    if namespace == operator_namespace or ALL_NAMESPACES in listed or namespace in listed:
        return True
    return labels is not None and labels.get(namespace_label(cloudhost.name)) == (
        NAMESPACE_ALLOWED_VALUE
    )


def refusal(cloudhost: CloudHostConfig, namespace: str) -> str:
    """What the status says to a namespace the CloudHost does not admit."""
    return (
        f"CloudHost {cloudhost.name} does not admit namespace {namespace}: list it in the "
        f"CloudHost's spec.allowedNamespaces, or label the namespace "
        f"{namespace_label(cloudhost.name)}={NAMESPACE_ALLOWED_VALUE}"
    )
