"""A real Kubernetes control plane on loopback: etcd and kube-apiserver built from upstream sources.

Client-certificate authentication and RBAC authorization, as on a real cluster: the admin is in
`system:masters`; `kubeconfig_for` mints credentials for any other user, so RBAC can be tested.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Sequence
from pathlib import Path

from testbed import binaries
from testbed.pki import TestCA, write_signing_key
from testbed.processes import ServerProcess, Servers, free_port, http_ok
from testbed.waiting import wait_for

KUBECONFIG_TEMPLATE = """apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: testbed
  context:
    cluster: testbed
    user: {user}
    namespace: default
current-context: testbed
"""


class ControlPlane(Servers):
    def __init__(self, workdir: Path, extra_apiserver_args: Sequence[str] = ()) -> None:
        """`extra_apiserver_args`: more kube-apiserver flags (the benchmarks' audit log)."""
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.pki = TestCA(workdir / "pki", "testbed")
        self.etcd: ServerProcess | None = None
        self.apiserver: ServerProcess | None = None
        self.server_url = ""
        self.admin_kubeconfig = workdir / "admin.kubeconfig"
        self.startup_seconds: dict[str, float] = {}

    def start(self) -> None:
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.etcd = ServerProcess(
            "etcd",
            [
                str(binaries.go_program("etcd")),
                "--name=testbed",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=testbed=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",  # a throwaway store: durability costs seconds per test run
            ],
            self.workdir / "etcd.log",
        )
        self.startup_seconds["etcd"] = self.etcd.wait_until(
            lambda: http_ok(f"{etcd_url}/health", expect=b'"health":"true"'), what="healthy"
        )

        serving = self.pki.serving_pair("apiserver", ("localhost", "kubernetes.default.svc"))
        signing_key = self.workdir / "pki" / "service-account.key"
        verifying_key = self.workdir / "pki" / "service-account.pub"
        write_signing_key(signing_key, verifying_key)
        self.server_url = f"https://127.0.0.1:{api_port}"
        self._apiserver_argv = [
            str(binaries.go_program("kube-apiserver")),
            f"--etcd-servers={etcd_url}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={self.pki.cert_path}",
            f"--secure-port={api_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={verifying_key}",
            f"--service-account-signing-key-file={signing_key}",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            *self.extra_apiserver_args,
        ]
        admin = self.pki.client_pair("admin", "testbed-admin", ("system:masters",))
        self._write_kubeconfig(self.admin_kubeconfig, "testbed-admin", admin.cert, admin.key)
        self._admin_context = ssl.create_default_context(cafile=str(self.pki.cert_path))
        self._admin_context.load_cert_chain(str(admin.cert), str(admin.key))
        self.startup_seconds["kube-apiserver"] = self._start_apiserver()
        self._wait_for_default_namespace()

    def _start_apiserver(self) -> float:
        self.apiserver = ServerProcess(
            "kube-apiserver", self._apiserver_argv, self.workdir / "kube-apiserver.log"
        )
        return self.apiserver.wait_until(
            lambda: http_ok(f"{self.server_url}/readyz", context=self._admin_context),
            what="ready",
        )

    def stop_apiserver(self) -> None:
        """The API server goes away (etcd keeps the data), as in an upgrade or a crash."""
        assert self.apiserver is not None
        self.apiserver.stop()

    def start_apiserver(self) -> float:
        """The same API server again, on the same port; seconds until it is ready."""
        return self._start_apiserver()

    def _wait_for_default_namespace(self) -> None:
        # The apiserver creates it right after /readyz; objects in it fail until then.
        wait_for(
            "namespace default to be created",
            lambda: self.kubectl("get", "namespace", "default", check=False).returncode == 0,
            timeout=30,
            interval=0.1,
        )

    def stop(self) -> None:
        for process in (self.apiserver, self.etcd):
            if process is not None:
                process.stop()

    def _write_kubeconfig(self, path: Path, user: str, cert: Path, key: Path) -> None:
        path.write_text(
            KUBECONFIG_TEMPLATE.format(
                server=self.server_url, ca=self.pki.cert_path, user=user, cert=cert, key=key
            )
        )
        path.chmod(0o600)

    def kubeconfig_for(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig for `user` in `groups`, with only the rights RBAC gives them."""
        pair = self.pki.client_pair(f"user-{user}", user, groups)
        path = self.workdir / f"{user}.kubeconfig"
        self._write_kubeconfig(path, user, pair.cert, pair.key)
        return path

    @property
    def kubectl_path(self) -> Path:
        return binaries.go_program("kubectl")

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        command = [
            str(binaries.go_program("kubectl")),
            f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
            *args,
        ]
        result = subprocess.run(
            command, input=stdin, capture_output=True, text=True, check=False, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result
