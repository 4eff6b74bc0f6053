"""Secrets on a build machine: the Secrets a CloudHost (or an EAB setting) names, as files.

    SECRETS_DIR/NAMESPACE/NAME/KEY          e.g. /etc/certfleet/secrets/certfleet-system/
                                                 sandbox-s3-credentials/accessKeyID

The layout of a Kubernetes Secret mounted as a volume, so the same documents serve a cluster
and a build machine unchanged and no secret is ever written into the YAML. The Datastores
port over it builds one S3Datastore per CloudHost; values never reach a log or a message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from certfleet.api.names import MASTER_KEY, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY
from certfleet.api.spec import CloudHostConfig, ObjectRef
from certfleet.buildmachine.files import FilesError, read_bounded
from certfleet.controller.gather import DatastoreNotConfiguredError
from certfleet.datastore.client import s3_client
from certfleet.datastore.encryption import MASTER_KEY_BYTES, MasterKey
from certfleet.datastore.protocol import Datastore
from certfleet.datastore.s3_store import S3Datastore

log = logging.getLogger(__name__)
MAX_SECRET_BYTES = 64 * 1024


class SecretsDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, ref: ObjectRef) -> Path:
        for part in (ref.namespace, ref.name):
            if "/" in part or part in (".", "..") or "\x00" in part:
                raise DatastoreNotConfiguredError(f"{part!r} cannot name a secret's folder")
        return self.root / ref.namespace / ref.name

    def value(self, namespace: str, name: str, key: str) -> bytes | None:
        """The SecretValue of the Issuer (External Account Binding)."""
        if "/" in key or key in (".", ".."):
            return None
        try:
            return read_bounded(self.folder(ObjectRef(namespace, name)) / key, MAX_SECRET_BYTES)
        except FilesError as error:
            raise DatastoreNotConfiguredError(str(error)) from None


class FileDatastores:
    """The Datastores port: the CloudHosts of the files given, their secrets from SecretsDir."""

    def __init__(
        self,
        cloudhosts: Mapping[str, CloudHostConfig],
        secrets: SecretsDir,
        on_s3_client: Callable[[Any], None] | None = None,
    ) -> None:
        self._cloudhosts = cloudhosts
        self._secrets = secrets
        self._on_s3_client = on_s3_client
        self._datastores: dict[str, S3Datastore] = {}

    def datastore(self, cloudhost: str) -> tuple[CloudHostConfig, Datastore]:
        config = self._cloudhosts.get(cloudhost)
        if config is None:
            raise DatastoreNotConfiguredError(f"CloudHost {cloudhost!r} is in none of the files")
        if cloudhost not in self._datastores:
            self._datastores[cloudhost] = self._datastore(config)
        return config, self._datastores[cloudhost]

    def _master_key(self, config: CloudHostConfig, ref: ObjectRef) -> MasterKey:
        key_file = self._secrets.folder(ref) / MASTER_KEY
        master = self._read(key_file)
        if master is None or len(master) != MASTER_KEY_BYTES:
            raise DatastoreNotConfiguredError(
                f"CloudHost {config.name}: {key_file} must hold the {MASTER_KEY_BYTES} random "
                "bytes of the datastore's master key"
            )
        return MasterKey(master)

    def _datastore(self, config: CloudHostConfig) -> S3Datastore:
        # The current key first (it seals everything new), then those being rotated out.
        masters = [
            self._master_key(config, ref)
            for ref in (config.encryption_key, *config.previous_encryption_keys)
        ]
        credentials = self._secrets.folder(config.credentials)
        access_key = self._read(credentials / S3_ACCESS_KEY_ID)
        secret_key = self._read(credentials / S3_SECRET_ACCESS_KEY)
        if (access_key is None) != (secret_key is None):
            raise DatastoreNotConfiguredError(
                f"CloudHost {config.name}: {credentials} needs both {S3_ACCESS_KEY_ID} and "
                f"{S3_SECRET_ACCESS_KEY}"
            )
        if access_key is None:
            # No files: boto3's own chain (AWS_ACCESS_KEY_ID and friends, an instance role).
            log.info(
                "CloudHost %s: no %s, using the AWS credential chain", config.name, credentials
            )
        try:
            client = s3_client(
                endpoint=config.endpoint,
                region=config.region,
                access_key_id=access_key.decode().strip() if access_key else None,
                secret_access_key=secret_key.decode().strip() if secret_key else None,
                addressing_style=config.addressing_style,
            )
        except (ValueError, UnicodeDecodeError) as error:
            raise DatastoreNotConfiguredError(
                f"CloudHost {config.name}: the S3 settings are not usable: {type(error).__name__}"
            ) from None
        if self._on_s3_client is not None:
            self._on_s3_client(client)
        return S3Datastore(client, masters)

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            return read_bounded(path, MAX_SECRET_BYTES)
        except FilesError as error:
            raise DatastoreNotConfiguredError(str(error)) from None
