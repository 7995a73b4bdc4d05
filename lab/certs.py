"""The lab's certificate authority and the server certificate every lab endpoint serves.

Clients verify the endpoints against ca.crt, exactly as they would a private CA at a real
site. The server certificate names DNS:localhost (pgBackRest 2.45 matches host names only)
and IP:127.0.0.1. make_certificate() is also used by the fault suite to make expired or
foreign certificates.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(common_name="AUDITRON lab CA", days=825):
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_certificate(ca_key, ca_cert, names=("localhost",), ips=("127.0.0.1",),
                     not_before=None, not_after=None):
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = not_before or now - datetime.timedelta(minutes=5)
    not_after = not_after or now + datetime.timedelta(days=365)
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def write_server_material(directory, key, cert, ca_cert, prefix="server"):
    """Write <prefix>.key (0600), <prefix>.crt and <prefix>-chain.crt (cert + CA, for rclone)."""
    pem = cert.public_bytes(serialization.Encoding.PEM)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    _write(os.path.join(directory, f"{prefix}.key"), _pem_key(key), 0o600)
    _write(os.path.join(directory, f"{prefix}.crt"), pem, 0o644)
    _write(os.path.join(directory, f"{prefix}-chain.crt"), pem + ca_pem, 0o644)


def ensure_lab_tls(directory):
    """Create the lab CA and server certificate once; later calls keep them."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    ca_path = os.path.join(directory, "ca.crt")
    server_path = os.path.join(directory, "server.crt")
    if os.path.exists(ca_path) and os.path.exists(server_path):
        with open(server_path, "rb") as handle:
            current = x509.load_pem_x509_certificate(handle.read())
        remaining = current.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
        if remaining > datetime.timedelta(days=7):
            return ca_path
    ca_key, ca_cert = make_ca()
    _write(os.path.join(directory, "ca.key"), _pem_key(ca_key), 0o600)
    _write(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    key, cert = make_certificate(ca_key, ca_cert)
    write_server_material(directory, key, cert, ca_cert)
    return ca_path
