"""Real webservers on loopback, each with its own prefix, config, TLS listener and reload.

nginx instances (several can run at once: a fleet) serve TLS from `certificate_dir`
(fullchain.pem and privkey.pem, as the agent installs them) and answer
/.well-known/acme-challenge/ from a webroot or by proxying to certfleet. Apache, lighttpd and
haproxy serve, by SNI, the pair (haproxy: combined.pem) of each domain under a root, as one
agent installs several certificates; Apache and lighttpd can also serve plain HTTP with a
site's own directives (certfleet's HTTP-01 snippet).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

from cryptography import x509

from certfleet.core.facts import certificate_facts
from testbed import binaries
from testbed.pki import TestCA
from testbed.processes import ServerProcess, Servers, free_port, tcp_open
from testbed.waiting import wait_for

NGINX_CONFIG = """\
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen {address}:{http_port};
        {http_site}
    }}
    server {{
        listen {address}:{https_port} ssl;
        ssl_certificate {certificate_dir}/fullchain.pem;
        ssl_certificate_key {certificate_dir}/privkey.pem;
        location / {{ return 200 "served over tls\\n"; }}
    }}
}}
"""


class Nginx(Servers):
    def __init__(
        self,
        prefix: Path,
        certificate_dir: Path,
        http_port: int | None = None,
        challenge_webroot: Path | None = None,
        challenge_proxy: str | None = None,
        address: str = "127.0.0.1",
        http_site: str | None = None,
    ) -> None:
        """`http_site`: the plain-HTTP server's directives, for a site's own configuration (e.g.
        one that includes certfleet's snippet); by default a challenge location (the webroot,
        or `challenge_proxy`) and a plain answer everywhere else."""
        self.prefix = prefix
        self.certificate_dir = certificate_dir
        self.address = address
        self.http_port = http_port or free_port()
        self.https_port = free_port()
        self.challenge_webroot = challenge_webroot or prefix / "webroot"
        self.challenge_proxy = challenge_proxy
        self.http_site = http_site
        self.config_path = prefix / "nginx.conf"
        self.process: ServerProcess | None = None
        self.startup_seconds = 0.0

    @property
    def _base_command(self) -> list[str]:
        return [
            str(binaries.system_program("nginx")),
            "-p",
            str(self.prefix),
            "-c",
            str(self.config_path),
            "-e",
            str(self.prefix / "error.log"),
        ]

    @property
    def test_command(self) -> list[str]:
        return [*self._base_command, "-t", "-q"]

    @property
    def reload_command(self) -> list[str]:
        return [*self._base_command, "-s", "reload"]

    def write_config(self) -> None:
        for folder in (self.prefix / "tmp", self.challenge_webroot):
            folder.mkdir(parents=True, exist_ok=True)
        if self.challenge_proxy:
            challenge = f"proxy_pass {self.challenge_proxy};"
        else:
            challenge = f"root {self.challenge_webroot};"
        http_site = self.http_site or (
            f"location /.well-known/acme-challenge/ {{ {challenge} }}\n"
            '        location / { return 200 "plain http\\n"; }'
        )
        # Workers read the webroot; as root they would run as an unprivileged user who cannot
        # enter pytest's 0700 temporary folders.
        user = "user root;" if os.geteuid() == 0 else ""
        self.config_path.write_text(
            NGINX_CONFIG.format(
                user=user,
                prefix=self.prefix,
                address=self.address,
                http_port=self.http_port,
                https_port=self.https_port,
                certificate_dir=self.certificate_dir,
                http_site=http_site,
            )
        )

    def install_placeholder_certificate(self) -> None:
        """A self-signed pair, as a fresh server has before certfleet installs the real one."""
        self.certificate_dir.mkdir(parents=True, exist_ok=True)
        pair = TestCA(self.prefix / "placeholder", "placeholder").serving_pair("placeholder")
        shutil.copyfile(pair.cert, self.certificate_dir / "fullchain.pem")
        shutil.copyfile(pair.key, self.certificate_dir / "privkey.pem")

    def start(self) -> None:
        if not (self.certificate_dir / "fullchain.pem").exists():
            self.install_placeholder_certificate()
        self.write_config()
        self.run(self.test_command)
        self.process = ServerProcess(
            f"nginx:{self.https_port}",
            [*self._base_command, "-g", "daemon off;"],
            self.prefix / "nginx.stdout.log",
        )
        self.startup_seconds = self.process.wait_until(
            lambda: (
                tcp_open(self.address, self.https_port) and tcp_open(self.address, self.http_port)
            )
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def run(self, command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")

    def reload(self) -> None:
        self.run(self.test_command)
        self.run(self.reload_command)

    def reloads_logged(self) -> int:
        """Reloads, as its error log (level info) tells them: the master's SIGHUP."""
        log = (self.prefix / "error.log").read_text(errors="replace")
        return log.count("(SIGHUP) received")

    def served_certificate(self, server_name: str, trust: Path | None = None) -> x509.Certificate:
        """The leaf this nginx presents in a TLS handshake; verified against `trust` if given."""
        if trust is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=str(trust))
        with (
            socket.create_connection((self.address, self.https_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)

    def wait_until_serving(
        self, serial: int, server_name: str, trust: Path | None = None, timeout: float = 10
    ) -> x509.Certificate:
        """Handshakes until the served leaf has `serial`: a graceful reload hands the listener to
        new workers asynchronously. Fails with what was served instead."""

        served = "nothing"

        def serial_served() -> x509.Certificate | None:
            nonlocal served
            leaf = self.served_certificate(server_name, trust)
            served = f"serial {leaf.serial_number:x}"
            return leaf if leaf.serial_number == serial else None

        # An OSError includes a failed verification: a handshake that fails now may work later.
        return wait_for(
            lambda: f"nginx {self.https_port} serving serial {serial:x} (it served {served})",
            serial_served,
            timeout,
            retry_on=(OSError,),
        )


LIGHTTPD_CONFIG = """\
server.document-root = "{prefix}/htdocs"
server.bind = "{address}"
server.port = {https_port}
server.pid-file = "{prefix}/lighttpd.pid"
server.errorlog = "{prefix}/logs/error.log"
{user}
server.modules += ("mod_openssl")
$SERVER["socket"] == "{address}:{https_port}" {{
    ssl.engine = "enable"
    ssl.pemfile = "{root}/{first}/fullchain.pem"
    ssl.privkey = "{root}/{first}/privkey.pem"
}}
{by_name}
{http_site}
"""


class Lighttpd:
    """Debian's lighttpd with its own prefix and one TLS listener serving, by SNI, the pair of
    each domain under `root` (as the agent installs them); in the foreground.

    `user`: lighttpd starts as root and drops to this user, as Debian's runs as www-data; it
    then reads the certificates again as that user at each graceful restart (SIGUSR1), so
    only files that user may read keep it up. `http_site`: directives of a plain-HTTP
    listener and the site's global directives (e.g. an include of certfleet's snippet), files
    served from htdocs/.
    """

    def __init__(
        self,
        prefix: Path,
        root: Path,
        domains: list[str],
        user: str | None = None,
        http_site: str | None = None,
    ) -> None:
        self.prefix = prefix
        self.root = root
        self.domains = domains
        self.user = user
        self.http_site = http_site
        self.address = "127.0.0.1"
        self.https_port = free_port()
        self.http_port = free_port()
        self.config_path = prefix / "lighttpd.conf"
        self.pid_file = prefix / "lighttpd.pid"
        self.error_log = prefix / "logs" / "error.log"
        self.process: ServerProcess | None = None

    @property
    def test_command(self) -> list[str]:
        return [str(binaries.system_program("lighttpd")), "-tt", "-f", str(self.config_path)]

    def start(self) -> None:
        (self.prefix / "htdocs").mkdir(parents=True, exist_ok=True)
        (self.prefix / "logs").mkdir(exist_ok=True)
        user = ""
        if self.user is not None:
            # Its log is reopened after the privileges are dropped.
            shutil.chown(self.prefix / "logs", self.user)
            user = f'server.username = "{self.user}"\nserver.groupname = "{self.user}"'
        by_name = "\n".join(
            f'$HTTP["host"] == "{domain}" {{\n'
            f'    ssl.pemfile = "{self.root}/{domain}/fullchain.pem"\n'
            f'    ssl.privkey = "{self.root}/{domain}/privkey.pem"\n}}'
            for domain in self.domains
        )
        http_site = ""
        if self.http_site is not None:
            # A plain-HTTP listener beside the TLS one; the site's directives are global, as
            # Debian's conf-enabled/*.conf are.
            http_site = (
                f'$SERVER["socket"] == "{self.address}:{self.http_port}" {{ }}\n{self.http_site}'
            )
        self.config_path.write_text(
            LIGHTTPD_CONFIG.format(
                prefix=self.prefix,
                address=self.address,
                https_port=self.https_port,
                user=user,
                root=self.root,
                first=self.domains[0],
                by_name=by_name,
                http_site=http_site,
            )
        )
        self.process = ServerProcess(
            f"lighttpd:{self.https_port}",
            [str(binaries.system_program("lighttpd")), "-D", "-f", str(self.config_path)],
            self.prefix / "lighttpd.stdout.log",
        )
        self.process.wait_until(
            lambda: (
                tcp_open(self.address, self.https_port)
                and (self.http_site is None or tcp_open(self.address, self.http_port))
                and self.pid_file.exists()
            )
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def starts_logged(self) -> int:
        """How often it (re)started: a graceful restart (SIGUSR1) logs "server started" again."""
        return self.error_log.read_text(errors="replace").count("server started")

    def reloads_logged(self) -> int:
        return self.starts_logged() - 1


def served_serial_by_sni(address: str, port: int, server_name: str, trust: Path) -> str:
    """The serial a verified handshake with `server_name` as SNI sees (or why there is none)."""
    context = ssl.create_default_context(cafile=str(trust))
    try:
        with (
            socket.create_connection((address, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as error:
        return f"<no verified handshake: {error}>"
    assert der is not None
    return certificate_facts(x509.load_der_x509_certificate(der)).serial


APACHE_CONFIG = """\
PidFile {prefix}/apache2.pid
Mutex file:{prefix} default
DefaultRuntimeDir {prefix}
ErrorLog {prefix}/error.log
LogLevel notice
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule alias_module {modules}/mod_alias.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_http_module {modules}/mod_proxy_http.so
LoadModule socache_shmcb_module {modules}/mod_socache_shmcb.so
LoadModule ssl_module {modules}/mod_ssl.so
{user}
ServerName localhost
DocumentRoot {prefix}/htdocs
Listen {address}:{https_port}
{tls_sites}
{http_site}
"""
APACHE_TLS_SITE = """\
<VirtualHost {address}:{https_port}>
    ServerName {domain}
    SSLEngine on
    SSLCertificateFile {root}/{domain}/fullchain.pem
    SSLCertificateKeyFile {root}/{domain}/privkey.pem
</VirtualHost>"""


class Apache:
    """Debian's apache2 with its own config, in the foreground: a TLS virtual host per domain
    (by SNI) serving the pair the agent installs under `root`, and with `http_site` a plain-HTTP
    virtual host of those directives (e.g. one that includes certfleet's snippet)."""

    def __init__(
        self, prefix: Path, root: Path, domains: list[str], http_site: str | None = None
    ) -> None:
        self.prefix = prefix
        self.root = root
        self.domains = domains
        self.http_site = http_site
        self.address = "127.0.0.1"
        self.https_port = free_port()
        self.http_port = free_port()
        self.config_path = prefix / "apache2.conf"
        self.pid_file = prefix / "apache2.pid"
        self.process: ServerProcess | None = None

    @property
    def _base(self) -> list[str]:
        return [str(binaries.system_program("apache2")), "-f", str(self.config_path)]

    @property
    def test_command(self) -> list[str]:
        return [*self._base, "-t"]

    @property
    def reload_command(self) -> list[str]:
        return [*self._base, "-k", "graceful"]

    def start(self) -> None:
        (self.prefix / "htdocs").mkdir(parents=True, exist_ok=True)
        # As root, apache's children must switch to an unprivileged user.
        user = "User nobody\nGroup nogroup" if os.geteuid() == 0 else ""
        tls_sites = "\n".join(
            APACHE_TLS_SITE.format(
                address=self.address, https_port=self.https_port, root=self.root, domain=domain
            )
            for domain in self.domains
        )
        http_site = ""
        if self.http_site is not None:
            http_site = (
                f"Listen {self.address}:{self.http_port}\n"
                f"<VirtualHost {self.address}:{self.http_port}>\n{self.http_site}\n</VirtualHost>"
            )
        self.config_path.write_text(
            APACHE_CONFIG.format(
                prefix=self.prefix,
                modules="/usr/lib/apache2/modules",
                user=user,
                address=self.address,
                https_port=self.https_port,
                tls_sites=tls_sites,
                http_site=http_site,
            )
        )
        result = subprocess.run(self.test_command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"apache2's configuration test failed:\n{result.stderr}")
        self.process = ServerProcess(
            f"apache2:{self.https_port}",
            [*self._base, "-DFOREGROUND"],
            self.prefix / "apache2.stdout.log",
        )
        self.process.wait_until(
            lambda: (
                tcp_open(self.address, self.https_port)
                and (self.http_site is None or tcp_open(self.address, self.http_port))
                and self.pid_file.exists()
            )
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def reloads_logged(self) -> int:
        """Graceful restarts, as its error log tells them (at LogLevel notice)."""
        log = (self.prefix / "error.log").read_text(errors="replace")
        return log.count("Doing graceful restart")


HAPROXY_CONFIG = """\
global
    master-worker
    pidfile {prefix}/haproxy.pid
    {user}
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend tls
    bind {address}:{https_port} ssl {certificates}
    http-request return status 200 content-type text/plain string "served by haproxy"
"""


class Haproxy:
    """Debian's haproxy in master-worker mode, in the foreground: one TLS listener serving, by
    SNI, the combined.pem (chain then key, one file) of each domain under `root`. SIGUSR2 to
    the master (the pid file's) reloads it gracefully: new workers, the old ones finish."""

    def __init__(self, prefix: Path, root: Path, domains: list[str], user: str | None = None):
        self.prefix = prefix
        self.root = root
        self.domains = domains
        self.user = user
        self.address = "127.0.0.1"
        self.https_port = free_port()
        self.config_path = prefix / "haproxy.cfg"
        self.pid_file = prefix / "haproxy.pid"
        self.log_path = prefix / "haproxy.log"
        self.process: ServerProcess | None = None

    @property
    def test_command(self) -> list[str]:
        return [str(binaries.system_program("haproxy")), "-c", "-q", "-f", str(self.config_path)]

    def start(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        certificates = " ".join(f"crt {self.root}/{domain}/combined.pem" for domain in self.domains)
        user = f"user {self.user}\n    group {self.user}" if self.user else ""
        self.config_path.write_text(
            HAPROXY_CONFIG.format(
                prefix=self.prefix,
                user=user,
                address=self.address,
                https_port=self.https_port,
                certificates=certificates,
            )
        )
        result = subprocess.run(self.test_command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"haproxy's configuration test failed:\n{result.stderr}")
        self.process = ServerProcess(
            f"haproxy:{self.https_port}",
            [str(binaries.system_program("haproxy")), "-db", "-f", str(self.config_path)],
            self.log_path,
        )
        self.process.wait_until(
            lambda: tcp_open(self.address, self.https_port) and self.pid_file.exists()
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def reloads_logged(self) -> int:
        return self.log_path.read_text(errors="replace").count("Reloading HAProxy")

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()
