"""Trial certificates and SuperNode keys for a fedseg deployment, made with ``cryptography``.

For trials and tests only, not for production: the CA private key sits next to the
certificates it signs, nothing is revoked and nobody vouches for the names. A real
operator gets the SuperLink's TLS certificate from their organisation's CA (or a public
one) and each merchant generates its own SuperNode key on its own machine.

- ``write_tls_certificates``: a self-signed CA and a SuperLink server certificate whose
  subject alternative names cover the addresses merchants dial (TLS for every API).
- ``write_node_keypair``: an EC P-384 key pair in OpenSSH format, the form
  ``flower-supernode --auth-supernode-private-key`` reads and
  ``flwr supernode register`` accepts (SuperNode authentication).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
_VALID_DAYS = 30  # trial certificates expire quickly on purpose


@dataclass(frozen=True)
class TlsFiles:
    """Where the trial CA and SuperLink certificate were written."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class NodeKeyFiles:
    """A SuperNode's key pair: the private key stays with the merchant, the public
    key goes to the operator for ``flwr supernode register``."""

    private_key: Path
    public_key: Path


def write_tls_certificates(
    out_dir: str | Path, *, hosts: Sequence[str] = DEFAULT_HOSTS
) -> TlsFiles:
    """Write ``ca.crt``/``ca.key`` and ``server.crt``/``server.key`` (PEM) into ``out_dir``.

    ``hosts`` are the IP addresses and DNS names the SuperLink is reached at; each one
    becomes a subject alternative name, which TLS clients check."""
    if not hosts:
        raise ValueError("certificates: give at least one host name or IP address")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = _name("fedseg trial CA (not for production)")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        _builder(_name(hosts[0]), ca_name, server_key.public_key())
        .add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    files = TlsFiles(out / "ca.crt", out / "ca.key", out / "server.crt", out / "server.key")
    _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(files.ca_key, _pem_private(ca_key), private=True)
    _write(files.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(files.server_key, _pem_private(server_key), private=True)
    return files


def write_node_keypair(out_dir: str | Path, name: str) -> NodeKeyFiles:
    """Write ``<name>.key`` (OpenSSH private, owner-only) and ``<name>.pub`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    files = NodeKeyFiles(out / f"{name}.key", out / f"{name}.pub")
    _write(files.private_key, private, private=True)
    _write(files.public_key, public + f" fedseg-{name}\n".encode(), private=False)
    return files


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
