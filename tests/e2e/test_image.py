"""certfleet's image, built by `make image` (deploy/image/build-image.sh) with podman: it lints
clean, runs as a numeric non-root user without compilers, and the image itself (not this
checkout's virtualenv) does the whole job on the test bed: `certfleet operator` until a
ManagedCertificate is Ready, then `certfleet agent`, configured exactly as the node-agent
DaemonSet says (its environment, mounts, uid 0 with CAP_KILL only, the host's pid namespace,
read-only S3 credentials), until a real nginx serves that certificate from the files the
container wrote; and the agent as the sidecar runs it (nginx's non-root uid, no capability).

The containers run with `podman run --network host`: the test bed's servers listen on
127.0.0.1. A podman that cannot build or run the image fails these tests, saying why.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from certfleet.core.facts import certificate_facts
from e2e.fleet import Fleet, new_domain
from testbed import image
from testbed.processes import ServerProcess
from testbed.s3 import S3Endpoint, S3Server
from testbed.webserver import Nginx

pytestmark = pytest.mark.testbed

DAEMONSET = image.REPO / "deploy" / "node-agent" / "daemonset.yaml"
IMAGE_UID = int(image.IMAGE_USER.split(":")[0])


@pytest.fixture(scope="module")
def certfleet_image() -> str:
    return image.image()


def test_hadolint_passes_on_the_containerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), str(image.REPO / "Containerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_certfleet_as_a_numeric_non_root_user(certfleet_image: str) -> None:
    config: Any = image.inspect(certfleet_image)["Config"]
    assert config["User"] == image.IMAGE_USER
    assert config["Entrypoint"] == ["certfleet"]
    shell = ["run", "--rm", "--entrypoint", "/bin/sh", certfleet_image, "-c"]
    assert image.podman(*shell, "id -u; id -g").stdout.split() == [str(IMAGE_UID)] * 2
    # No compiler, no pip: the final stage has the base and the virtualenv only.
    found = image.podman(
        *shell, "for p in gcc cc g++ make pip pip3; do command -v $p; done; true"
    ).stdout
    assert found.strip() == "", found
    usage = image.podman("run", "--rm", certfleet_image, "--help").stdout
    assert "{operator,agent,reconcile,renew}" in usage


def _operator_share(fleet: Fleet, folder: Path) -> Path:
    """What the operator's container reads: a kubeconfig with its credentials inline and
    pebble's CA file, owned by the image's user (the files here are root's, mode 0600)."""
    folder.mkdir()
    plane = fleet.install.control_plane
    flat = plane.kubectl("config", "view", "--raw", "--flatten").stdout
    (folder / "kubeconfig").write_text(flat)
    shutil.copyfile(fleet.ca.listener_ca_bundle, folder / "pebble-ca.pem")
    for path in (folder, folder / "kubeconfig", folder / "pebble-ca.pem"):
        os.chown(path, IMAGE_UID, IMAGE_UID)
        path.chmod(0o700 if path.is_dir() else 0o600)
    return folder


def _node_agent_container() -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """The DaemonSet's agent container: its literal environment (`$$` is Kubernetes' escape
    of `$`), its volume mounts by name, and its security context."""
    (daemonset,) = (
        d for d in yaml.safe_load_all(DAEMONSET.read_text()) if d["kind"] == "DaemonSet"
    )
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    env = {
        item["name"]: item["value"].replace("$$", "$")
        for item in container["env"]
        if "value" in item
    }
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    return env, mounts, container["securityContext"]


def _agent_files(fleet: Fleet, endpoint: S3Endpoint, folder: Path) -> dict[str, Path]:
    """The node's side of the DaemonSet's Secret volumes (the agents' read-only credentials,
    the master key), and the CA the probe trusts."""
    files = {
        "s3-credentials": {
            "accessKeyID": endpoint.access_key.encode(),
            "secretAccessKey": endpoint.secret_key.encode(),
        },
        "master-key": {"key": fleet.master_key},
        "trust": {"roots.pem": fleet.ca.issuing_roots_pem()},
    }
    folders = {}
    for volume, contents in files.items():
        folders[volume] = folder / volume
        folders[volume].mkdir(parents=True)
        for name, data in contents.items():
            (folders[volume] / name).write_bytes(data)
            (folders[volume] / name).chmod(0o400)
    return folders


def _on_the_test_bed(
    env: dict[str, str], fleet: Fleet, domain: str, nginx: Nginx, node: str
) -> dict[str, str]:
    """A manifest's agent settings with the test bed's values for its placeholders. No
    cluster reporting here: the status half is tests/e2e/test_agent.py's."""
    env = {
        **env,
        "WEBSITE_URL": domain,
        "CERTFLEET_CLOUDHOST": fleet.cloudhost,
        "CERTFLEET_S3_ENDPOINT": fleet.bucket.endpoint.url,
        "CERTFLEET_S3_REGION": fleet.bucket.endpoint.region,
        "CERTFLEET_S3_BUCKET": fleet.bucket.name,
        "CERTFLEET_NODE_NAME": node,
        "CERTFLEET_PROBE_ADDRESS": f"{nginx.address}:{nginx.https_port}",
        "CERTFLEET_PROBE_CA_FILE": "/var/run/certfleet/trust/roots.pem",
        "CERTFLEET_TRUST_BUNDLE": "/var/run/certfleet/trust/roots.pem",
        "CERTFLEET_POLL_INTERVAL": "1",
        "CERTFLEET_METRICS_PORT": "0",
    }
    del env["CERTFLEET_CERTIFICATE_NAMESPACE"], env["CERTFLEET_CERTIFICATE_NAME"]
    return env


def _wait_serving(
    agent: ServerProcess, nginx: Nginx, domain: str, trust: Path, serial: str
) -> None:
    """Until a verified handshake with nginx sees `serial` (the agent must keep running)."""

    def served() -> str:
        try:
            return certificate_facts(nginx.served_certificate(domain, trust)).serial
        except OSError as error:
            return f"<no verified handshake: {error}>"

    agent.wait_until(lambda: served() == serial, timeout=60, what=f"serving {serial}")


def test_the_image_issues_and_installs_a_certificate_served_by_nginx(
    start_fleet: Callable[..., Fleet],
    start_nginx: Callable[..., Nginx],
    s3_server: S3Server,
    certfleet_image: str,
    tmp_path: Path,
) -> None:
    fleet = start_fleet(replicas=0)
    suffix = secrets.token_hex(3)
    operator_name, agent_name = f"certfleet-operator-{suffix}", f"certfleet-agent-{suffix}"
    domain = new_domain()
    agent: ServerProcess | None = None
    try:
        # -- the operator, from the image, as the image's user --------------------------------
        share = _operator_share(fleet, tmp_path / "operator-share")
        started = time.monotonic()
        operator = fleet.install.start_operator(
            fleet.ca,
            command=image.run_argv(
                operator_name,
                certfleet_image,
                mounts={share: "/certfleet"},
                env={"KUBECONFIG": "/certfleet/kubeconfig"},
            ),
            ca_bundle=Path("/certfleet/pebble-ca.pem"),
        )
        fleet.apply_certificate("automatic.yaml", "web", domain)
        fleet.install.wait_for_condition(fleet.namespace, "web", "True", timeout=60)
        print(f"image: operator started to Ready in {time.monotonic() - started:.1f} s")
        operator_pid = image.main_pid(operator_name)
        uid_line = next(
            line
            for line in Path(f"/proc/{operator_pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        assert uid_line.split()[1:] == [str(IMAGE_UID)] * 4, uid_line
        operator_rss = image.peak_rss_mib(operator_pid)
        operator_cpu = image.cpu_seconds(operator_pid)
        stored = fleet.stored(domain)
        assert stored is not None, "Ready, but nothing in S3"

        # -- the agent, from the image, as the node-agent DaemonSet runs it -------------------
        env, mount_paths, security = _node_agent_container()
        node_ssl = tmp_path / "node" / "ssl"
        cert_root = node_ssl / Path(env["CERTFLEET_CERT_ROOT"]).relative_to(
            mount_paths["certificate-root"]
        )
        nginx = start_nginx(certificate_dir=cert_root / domain)  # a placeholder until then
        # The CloudHost's agent credentials: they read its prefix and write nothing.
        reader = s3_server.read_only_user(fleet.bucket.name, f"certfleet/{fleet.cloudhost}")
        files = _agent_files(fleet, reader, tmp_path / "agent")
        env = _on_the_test_bed(env, fleet, domain, nginx, "node-a")
        assert security["capabilities"] == {"drop": ["ALL"], "add": ["KILL"]}
        assert security["readOnlyRootFilesystem"] is True
        user = f"{security['runAsUser']}:{security['runAsGroup']}"
        agent = ServerProcess(
            "certfleet-agent-image",
            image.run_argv(
                agent_name,
                certfleet_image,
                mounts={
                    files["s3-credentials"]: mount_paths["s3-credentials"],
                    files["master-key"]: mount_paths["master-key"],
                    files["trust"]: "/var/run/certfleet/trust",
                    node_ssl: mount_paths["certificate-root"] + ":rw",
                    # The folder of nginx's pid file, as the DaemonSet's webserver-pid hostPath.
                    nginx.prefix: mount_paths["webserver-pid"],
                },
                env=env,
                options=[
                    f"--user={user}",
                    "--pid=host",
                    "--cap-drop=ALL",
                    *(f"--cap-add={cap}" for cap in security["capabilities"]["add"]),
                    "--security-opt=no-new-privileges",
                ],
                args=["agent"],
            ),
            tmp_path / "agent.log",
        )
        _wait_serving(agent, nginx, domain, files["trust"] / "roots.pem", stored.pointer.serial)
        installed = cert_root / domain
        assert (installed / "fullchain.pem").read_bytes() == stored.fullchain
        assert (installed / "privkey.pem").stat().st_mode & 0o777 == 0o600
        agent_pid = image.main_pid(agent_name)
        agent_rss, agent_cpu = image.peak_rss_mib(agent_pid), image.cpu_seconds(agent_pid)
        # The figures behind the manifests' requests and limits (their comments say them).
        print(
            f"image: peak RSS operator {operator_rss:.0f} MiB, agent {agent_rss:.0f} MiB; CPU "
            f"operator {operator_cpu:.1f} s to Ready, agent {agent_cpu:.1f} s to serving"
        )
        assert operator.alive()
    finally:
        if agent is not None:
            agent.stop()
        fleet.install.stop_operator()
        image.remove(operator_name)
        image.remove(agent_name)


# -- the sidecar layout ---------------------------------------------------------------------

SIDECAR = image.REPO / "deploy" / "sidecar"


def _sidecar_agent() -> tuple[dict[str, str], dict[str, str], dict[str, Any], dict[str, Any]]:
    """The sidecar's agent: its settings (agent.env, the ConfigMap), its volume mounts by name,
    its security context and the pod's."""
    lines = (SIDECAR / "agent.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    (deployment,) = (
        d
        for d in yaml.safe_load_all((SIDECAR / "webserver.yaml").read_text())
        if d["kind"] == "Deployment"
    )
    pod = deployment["spec"]["template"]["spec"]
    (agent,) = (c for c in pod["containers"] if c["name"] == "agent")
    mounts = {mount["name"]: mount["mountPath"] for mount in agent["volumeMounts"]}
    return env, mounts, agent["securityContext"], pod["securityContext"]


class SameUidNginx(Nginx):
    """The test bed's nginx as `uid`, as the sidecar pod's webserver container runs (the pod's
    runAsUser), from a folder that uid owns."""

    def __init__(self, base: Path, certificate_dir: Path, uid: int) -> None:
        super().__init__(base / "nginx", certificate_dir)
        self.base, self.uid = base, uid

    @property
    def _base_command(self) -> list[str]:
        user = [f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
        return ["setpriv", *user, *super()._base_command]

    def write_config(self) -> None:
        super().write_config()
        for folder, _, names in os.walk(self.base):
            for path in (folder, *(os.path.join(folder, name) for name in names)):
                os.chown(path, self.uid, self.uid)


def test_the_image_as_a_sidecar_reloads_nginx_without_any_capability(
    fleet: Fleet, s3_server: S3Server, certfleet_image: str, tmp_path: Path
) -> None:
    """The sidecar's agent, as deploy/sidecar configures it: the pod's non-root uid, no
    capability, SIGHUP to the pid in nginx's pid file (the host's pid namespace stands in for
    the pod's shared one). The certificate comes from the test bed's operator."""
    domain = new_domain()
    fleet.apply_certificate("automatic.yaml", "web", domain)
    fleet.install.wait_for_condition(fleet.namespace, "web", "True", timeout=60)
    stored = fleet.stored(domain)
    assert stored is not None
    env, mount_paths, security, pod_security = _sidecar_agent()
    assert security["capabilities"] == {"drop": ["ALL"]}
    uid = pod_security["runAsUser"]
    assert pod_security["runAsNonRoot"] is True and uid != 0

    base = Path(tempfile.mkdtemp(prefix="certfleet-sidecar-"))  # outside pytest's 0700 folders
    agent_name = f"certfleet-sidecar-{secrets.token_hex(3)}"
    agent: ServerProcess | None = None
    nginx: Nginx | None = None
    try:
        certificates = base / "certificates"
        cert_root = certificates / Path(env["CERTFLEET_CERT_ROOT"]).relative_to(
            mount_paths["certificates"]
        )
        nginx = SameUidNginx(base, cert_root / domain, uid)
        nginx.start()
        reader = s3_server.read_only_user(fleet.bucket.name, f"certfleet/{fleet.cloudhost}")
        files = _agent_files(fleet, reader, tmp_path / "agent")
        for folder in files.values():
            for path in (folder, *folder.iterdir()):
                os.chown(path, uid, uid)  # the pod's fsGroup makes them the pod's
        env = _on_the_test_bed(env, fleet, domain, nginx, "pod-a")
        agent = ServerProcess(
            "certfleet-sidecar-image",
            image.run_argv(
                agent_name,
                certfleet_image,
                mounts={
                    files["s3-credentials"]: mount_paths["s3-credentials"],
                    files["master-key"]: mount_paths["master-key"],
                    files["trust"]: "/var/run/certfleet/trust",
                    certificates: mount_paths["certificates"] + ":rw",
                    nginx.prefix: mount_paths["nginx-pid"],  # where nginx writes its pid file
                },
                env=env,
                options=[
                    f"--user={uid}:{pod_security['runAsGroup']}",
                    "--pid=host",
                    "--cap-drop=ALL",
                    "--security-opt=no-new-privileges",
                ],
                args=["agent"],
            ),
            tmp_path / "sidecar-agent.log",
        )
        _wait_serving(agent, nginx, domain, files["trust"] / "roots.pem", stored.pointer.serial)
        status = Path(f"/proc/{image.main_pid(agent_name)}/status").read_text().splitlines()
        fields = dict(line.split(":", 1) for line in status)
        assert fields["Uid"].split()[0] == str(uid)
        assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
    finally:
        if agent is not None:
            agent.stop()
        image.remove(agent_name)
        if nginx is not None:
            nginx.stop()
        shutil.rmtree(base, ignore_errors=True)
