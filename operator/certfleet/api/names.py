"""Names that make up certfleet's Kubernetes contract: one place, no bare strings elsewhere."""

from __future__ import annotations

GROUP = "certfleet.io"
VERSION = "v1alpha1"
MANAGED_CERTIFICATES = "managedcertificates"
MANAGED_CERTIFICATE_KIND = "ManagedCertificate"
CLOUDHOSTS = "cloudhosts"

# Set by a person (any value) to get a new certificate now; certfleet removes it when done.
RENEW_NOW_ANNOTATION = "certfleet.io/renew-now"
# kopf's own bookkeeping annotations. Not plain "certfleet.io": kopf leaves every annotation
# under its storage prefix out of its diffs, so a person's certfleet.io/renew-now would go unseen.
KOPF_ANNOTATION_PREFIX = "operator.certfleet.io"
FINALIZER = "certfleet.io/finalizer"
# Set by a person on a ManagedCertificate to take its location over from the owner it names
# ("namespace/name", or "build-machines:NAME"), once that owner is gone or cannot be seen.
TAKE_OVER_ANNOTATION = "certfleet.io/take-over-from"
# A namespace labelled cloudhost.certfleet.io/<cloudhost>=allowed may use that CloudHost.
CLOUDHOST_NAMESPACE_LABEL_PREFIX = "cloudhost.certfleet.io/"
NAMESPACE_ALLOWED_VALUE = "allowed"

MANAGED_BY_LABEL = {"app.kubernetes.io/managed-by": "certfleet"}
CACHE_LABEL = "certfleet.io/cache"
ACCOUNT_LABEL = "certfleet.io/acme-account"
DOMAIN_ANNOTATION = "certfleet.io/domain"
CLOUDHOST_ANNOTATION = "certfleet.io/cloudhost"
BUILD_IDENTIFIER_ANNOTATION = "certfleet.io/build-identifier"
ACCOUNT_URL_ANNOTATION = "certfleet.io/acme-account-url"
ACCOUNT_DIRECTORY_ANNOTATION = "certfleet.io/acme-directory"
ACCOUNT_NAMESPACE_ANNOTATION = "certfleet.io/acme-account-namespace"  # whose account

# Keys of the Secrets certfleet reads and writes.
TLS_SECRET_TYPE = "kubernetes.io/tls"  # noqa: S105 - a Secret type, not a password
TLS_CERT_KEY = "tls.crt"
TLS_PRIVATE_KEY = "tls.key"
ACCOUNT_KEY = "account.json"
S3_ACCESS_KEY_ID = "accessKeyID"
S3_SECRET_ACCESS_KEY = "secretAccessKey"  # noqa: S105 - the name of a key, not a password
MASTER_KEY = "key"
