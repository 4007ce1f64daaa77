"""Certificates and keys for the local control plane.

Sits below `tests.cluster.launcher`, which calls `write_pki()` once per cluster start
before any process is launched. Everything is generated fresh with the `cryptography`
package: one CA that signs the serving certificates (all on 127.0.0.1) and the client
certificates of each component, plus the key pair that signs ServiceAccount tokens.
ECDSA P-256 keys keep generation in the milliseconds; the ServiceAccount key is RSA
because RS256 is what every token consumer expects.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=7)

# Names the API server gives itself in the cluster; a serving certificate that lacks
# them makes in-cluster clients (and kubectl through the service) refuse the server.
_APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclasses.dataclass(frozen=True)
class CertPair:
    """Paths of one PEM certificate and its private key."""

    cert: pathlib.Path
    key: pathlib.Path


@dataclasses.dataclass(frozen=True)
class Pki:
    """All files the control plane components read, by role."""

    ca: CertPair
    apiserver: CertPair
    # Clients of the API server: (user name, groups) are baked into the subject.
    admin: CertPair
    controller_manager: CertPair
    scheduler: CertPair
    kwok: CertPair
    # Serving certificates of the components that expose health endpoints over TLS.
    controller_manager_serving: CertPair
    scheduler_serving: CertPair
    service_account_key: pathlib.Path
    service_account_pub: pathlib.Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: pathlib.Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: pathlib.Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    # Backdated a little so a clock that is a few seconds off does not reject a new cert.
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


class _Ca:
    """A self-signed certificate authority that issues leaf certificates into a folder."""

    def __init__(self, directory: pathlib.Path, *, existing: bool = False) -> None:
        self.directory = directory
        self.pair = CertPair(directory / "ca.crt", directory / "ca.key")
        if existing:  # load_ca: a running cluster's CA, to issue more identities
            self.key = serialization.load_pem_private_key(self.pair.key.read_bytes(), password=None)
            self.cert = x509.load_pem_x509_certificate(self.pair.cert.read_bytes())
            self.subject = self.cert.subject
            return
        self.key = _new_key()
        self.subject = _name("voice-service-test-ca")
        self.cert = (
            _builder(self.subject, self.subject, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        _write_cert(self.pair.cert, self.cert)
        _write_key(self.pair.key, self.key)

    def issue(
        self,
        file_stem: str,
        common_name: str,
        *,
        organizations: tuple[str, ...] = (),
        client: bool = False,
        server: bool = False,
        dns_names: tuple[str, ...] = (),
        ip_addresses: tuple[str, ...] = (),
    ) -> CertPair:
        key = _new_key()
        usages = []
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            _builder(_name(common_name, organizations), self.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_encipherment=False, key_cert_sign=False,
                    crl_sign=False, content_commitment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if dns_names or ip_addresses:
            names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pair = CertPair(self.directory / f"{file_stem}.crt", self.directory / f"{file_stem}.key")
        _write_cert(pair.cert, cert)
        _write_key(pair.key, key)
        return pair


def load_ca(directory: pathlib.Path) -> _Ca:
    """The CA that ``write_pki`` wrote into ``directory``, to issue more identities (the
    real test node's kubelet and kube-proxy, tests/cluster/node.py)."""
    return _Ca(directory, existing=True)


def write_pki(directory: pathlib.Path, *, service_cluster_ip: str, api_address: str = "127.0.0.1") -> Pki:
    """Generate every certificate and key of one cluster into `directory`.

    `service_cluster_ip` is the first address of the service range: the in-cluster
    `kubernetes` Service points there, so the API server certificate must name it.
    `api_address` is where the API server listens (loopback by default): its certificate names it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = _Ca(directory)
    loopback = ("127.0.0.1",)

    apiserver = ca.issue(
        "apiserver", "kube-apiserver", server=True,
        dns_names=_APISERVER_DNS_NAMES, ip_addresses=tuple(dict.fromkeys((*loopback, api_address, service_cluster_ip))),
    )
    # The identities below are the ones Kubernetes' bootstrap RBAC policy knows:
    # system:masters is the superuser group; the component users have their own roles.
    admin = ca.issue("admin", "voice-e2e-admin", organizations=("system:masters",), client=True)
    controller_manager = ca.issue("controller-manager", "system:kube-controller-manager", client=True)
    scheduler = ca.issue("scheduler", "system:kube-scheduler", client=True)
    # kwok writes node and pod status for every fake node, which a kubelet's node identity
    # could not do across nodes; it runs as a cluster admin, as kwokctl does.
    kwok = ca.issue("kwok", "kwok-controller", organizations=("system:masters",), client=True)
    controller_manager_serving = ca.issue(
        "controller-manager-serving", "kube-controller-manager", server=True,
        dns_names=("localhost",), ip_addresses=loopback,
    )
    scheduler_serving = ca.issue(
        "scheduler-serving", "kube-scheduler", server=True,
        dns_names=("localhost",), ip_addresses=loopback,
    )

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key_path = directory / "sa.key"
    sa_pub_path = directory / "sa.pub"
    _write_key(sa_key_path, sa_key)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Pki(
        ca=ca.pair,
        apiserver=apiserver,
        admin=admin,
        controller_manager=controller_manager,
        scheduler=scheduler,
        kwok=kwok,
        controller_manager_serving=controller_manager_serving,
        scheduler_serving=scheduler_serving,
        service_account_key=sa_key_path,
        service_account_pub=sa_pub_path,
    )
