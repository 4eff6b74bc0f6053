"""The ManagedCertificate and CloudHost specs the controller's unit tests reconcile."""

from __future__ import annotations

from typing import Any

BUCKET = "certfleet-unit"
NAMESPACE = "shop"
DOMAIN = "www.example.com"
SPEC: dict[str, Any] = {
    "domain": DOMAIN,
    "cloudhost": "aws",
    "buildIdentifier": "build-7",
    "generationMethod": "AUTOMATIC",
    "acme": {"server": "https://ca.example/dir"},
}
MANUAL_SPEC = {**SPEC, "generationMethod": "MANUAL", "manual": {"secretName": "supplied"}}
CLOUDHOST = {
    "spec": {
        "bucket": BUCKET,
        "credentialsSecretRef": {"namespace": "ops", "name": "creds"},
        "encryptionKeySecretRef": {"namespace": "ops", "name": "key"},
    }
}
