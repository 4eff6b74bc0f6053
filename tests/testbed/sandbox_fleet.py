"""The webserver half of `make sandbox`: two nodes, each an nginx and a `certfleet agent`
process, installing the certificate the operator published and reporting to its status.

The agents run as the node agent's service account would: with deploy/node-agent/rbac.yaml's
rights (client certificates in the service account's user name) and the CloudHost's read-only
agent credentials. Each confirms what its nginx serves by a verified TLS handshake against the
CA's roots, which the printed `curl --cacert` line uses too.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from testbed.acme_ca import AcmeCA
from testbed.certfleet_install import OPERATOR_NAMESPACE, REPO
from testbed.control_plane import ControlPlane
from testbed.processes import ServerProcess
from testbed.s3 import S3Endpoint
from testbed.webserver import Nginx

NODE_AGENT_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:certfleet-agent"
NODE_AGENT_GROUPS = ("system:serviceaccounts", f"system:serviceaccounts:{OPERATOR_NAMESPACE}")


@dataclass(frozen=True)
class Certificate:
    """What the agents follow: the ManagedCertificate and its place in the datastore."""

    namespace: str
    name: str
    domain: str
    cloudhost: str
    build_identifier: str
    bucket: str
    prefix: str


@dataclass
class Node:
    name: str
    nginx: Nginx
    agent: ServerProcess


class SandboxFleet:
    """Two nodes; `stack` stops them (agents first) when the sandbox ends."""

    def __init__(self, workdir: Path, stack: ExitStack) -> None:
        self.workdir = workdir
        self.stack = stack
        self.nodes: list[Node] = []
        workdir.mkdir(parents=True, exist_ok=True)
        self.trust = workdir / "acme-roots.pem"

    def start(
        self,
        plane: ControlPlane,
        ca: AcmeCA,
        reader: S3Endpoint,
        master_key: bytes,
        certificate: Certificate,
        node_names: tuple[str, ...] = ("node-a", "node-b"),
    ) -> None:
        plane.kubectl("apply", "-f", str(REPO / "deploy" / "node-agent" / "rbac.yaml"))
        # The Python client splits a kubeconfig path at ':' (as KUBECONFIG): a plain name.
        kubeconfig = self.workdir / "agent.kubeconfig"
        shutil.copyfile(plane.kubeconfig_for(NODE_AGENT_USER, NODE_AGENT_GROUPS), kubeconfig)
        self.trust.write_bytes(ca.issuing_roots_pem())
        secrets = self.workdir / "agent-secrets"
        secrets.mkdir(exist_ok=True)
        for name, data in (
            ("accessKeyID", reader.access_key.encode()),
            ("secretAccessKey", reader.secret_key.encode()),
            ("key", master_key),
        ):
            (secrets / name).write_bytes(data)
            (secrets / name).chmod(0o600)
        for name in node_names:
            root = self.workdir / name / "ssl" / "live"
            nginx = self.stack.enter_context(
                Nginx(self.workdir / name / "nginx", root / certificate.domain)
            )
            flags = [
                f"--s3-endpoint={reader.url}",
                f"--s3-region={reader.region}",
                f"--s3-bucket={certificate.bucket}",
                f"--s3-prefix={certificate.prefix}",
                f"--access-key-id-file={secrets / 'accessKeyID'}",
                f"--secret-access-key-file={secrets / 'secretAccessKey'}",
                f"--master-key-file={secrets / 'key'}",
                f"--cloudhost={certificate.cloudhost}",
                f"--build-identifier={certificate.build_identifier}",
                f"--domain={certificate.domain}",
                f"--cert-root={root}",
                f"--trust-bundle={self.trust}",  # pebble's root: the CloudHost's bundle
                f"--node-name={name}",
                "--poll-interval=2",
                "--metrics-port=0",
                # The sandbox's nginx has its own prefix and config: its own commands.
                f"--test-command={shlex.join(nginx.test_command)}",
                f"--reload-command={shlex.join(nginx.reload_command)}",
                f"--probe-address={nginx.address}:{nginx.https_port}",
                f"--probe-ca-file={self.trust}",
                f"--certificate-namespace={certificate.namespace}",
                f"--certificate-name={certificate.name}",
                f"--kubeconfig={kubeconfig}",
            ]
            agent = ServerProcess(
                f"agent-{name}",
                [sys.executable, "-m", "certfleet.cli", "agent", *flags],
                self.workdir / f"agent-{name}.log",
                env={"PYTHONUNBUFFERED": "1"},
            )
            self.stack.callback(agent.stop)
            self.nodes.append(Node(name, nginx, agent))

    def curl_line(self, domain: str) -> str:
        """What a newcomer pastes to see the first node serve the certificate."""
        port = self.nodes[0].nginx.https_port
        return (
            f"curl --cacert {self.trust} --resolve {domain}:{port}:127.0.0.1 "
            f"https://{domain}:{port}/"
        )

    def logs(self) -> str:
        return "\n".join(f"{node.agent.name}:\n{node.agent.log_tail(10)}" for node in self.nodes)
