"""A small private PKI for the test bed: serving and client certificates on loopback."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


class TestCA:
    """A CA whose files live in `directory`; it signs serving and client certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = directory / f"{name}-ca.crt"
        self.cert_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        self.key_path = directory / f"{name}-ca.key"
        _write_private(self.key_path, self._pem_key(self._key))

    @staticmethod
    def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def _issue(
        self,
        stem: str,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        dns_names: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
    ) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        pair = KeyPair(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        pair.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_private(pair.key, self._pem_key(key))
        return pair

    def serving_pair(self, stem: str, dns_names: tuple[str, ...] = ("localhost",)) -> KeyPair:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
        return self._issue(
            stem, subject, ExtendedKeyUsageOID.SERVER_AUTH, dns_names, ips=("127.0.0.1",)
        )

    def client_pair(self, stem: str, user: str, groups: tuple[str, ...] = ()) -> KeyPair:
        """A client certificate as Kubernetes reads it: CN is the user, O the groups."""
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        return self._issue(stem, x509.Name(attributes), ExtendedKeyUsageOID.CLIENT_AUTH)


def write_signing_key(private_path: Path, public_path: Path) -> None:
    """An ECDSA pair for service account tokens (kube-apiserver takes RSA or ECDSA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(private_path, TestCA._pem_key(key))
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


# -- certificates for the bad-input tests --------------------------------------------------


def _ca_extensions(
    builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey, path_length: int | None
) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def pem_of(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def key_pem_of(key: ec.EllipticCurvePrivateKey) -> bytes:
    return TestCA._pem_key(key)


@dataclass(frozen=True)
class Leaf:
    """A leaf certificate and its key, with the chain its CA serves it with."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]  # the intermediates after the leaf

    @property
    def fullchain(self) -> bytes:
        return pem_of(self.certificate, *self.chain)

    @property
    def key_pem(self) -> bytes:
        return key_pem_of(self.key)


class IntermediateCA:
    """A CA as public CAs are: a root (in the trust bundle) and an intermediate that signs the
    leaves, so a leaf needs the intermediate in its chain. Good leaves and every kind of bad
    one (clientAuth-only, CA:TRUE, any validity period, signed by a leaf) for the tests of
    what certfleet must refuse."""

    __test__ = False

    def __init__(self, name: str) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root")])
        self.root = _ca_extensions(
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=3650))
            .not_valid_after(now + datetime.timedelta(days=3650)),
            self.root_key,
            None,
        ).sign(self.root_key, hashes.SHA256())
        self.intermediate_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = self._sign(
            _ca_extensions(
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} R1")]))
                .issuer_name(root_name)
                .public_key(self.intermediate_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=365))
                .not_valid_after(now + datetime.timedelta(days=1825)),
                self.intermediate_key,
                0,
            ),
            self.root,
            self.root_key,
        )

    @property
    def root_pem(self) -> bytes:
        return pem_of(self.root)

    @staticmethod
    def _sign(
        builder: x509.CertificateBuilder,
        issuer: x509.Certificate,
        issuer_key: ec.EllipticCurvePrivateKey,
    ) -> x509.Certificate:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
        return builder.add_extension(aki, critical=False).sign(issuer_key, hashes.SHA256())

    def leaf(
        self,
        *names: str,
        valid_from_days: float = -1,
        valid_for_days: float = 90,
        usages: tuple[x509.ObjectIdentifier, ...] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
        ca: bool = False,
        signer: Leaf | None = None,
    ) -> Leaf:
        """A leaf for `names` signed by the intermediate (or by `signer`, a leaf: a forged
        intermediate); `usages` None leaves extendedKeyUsage out."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=valid_from_days)
        issuer, issuer_key = (
            (signer.certificate, signer.key)
            if signer
            else (self.intermediate, self.intermediate_key)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=valid_for_days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in names]),
                critical=False,
            )
        )
        if usages is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        certificate = self._sign(builder, issuer, issuer_key)
        chain = (signer.certificate, *signer.chain) if signer else (self.intermediate,)
        return Leaf(certificate, key, chain)


def self_signed(name: str) -> Leaf:
    """A server certificate for `name` that nobody issued but itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Leaf(certificate, key, ())
