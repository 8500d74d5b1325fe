"""TLS on both ports, with a certificate made here by `cryptography`; durably's client and CLI
verify it with a CA file."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.security.conftest import StartServices
from tests.support.harness import REPO_ROOT, DurablyServer

from durably.client import Client


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, cert.pem, key.pem): a CA and a server certificate for localhost/127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "durably test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class TlsDurably(DurablyServer):
    def __init__(self, base: Path, ca: Path, cert: Path, key: Path) -> None:
        super().__init__(base, extra_args=["--tls-cert-file", str(cert), "--tls-key-file", str(key)])
        self.ca = ca

    @property
    def ingress_url(self) -> str:
        return f"https://127.0.0.1:{self.ingress_port}"

    @property
    def admin_url(self) -> str:
        return f"https://127.0.0.1:{self.admin_port}"

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(verify=ssl.create_default_context(cafile=self.ca), timeout=2.0) as client:
            while True:
                assert self.proc is not None and self.proc.poll() is None, self.log_tail()
                try:
                    if client.get(f"{self.admin_url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, self.log_tail()
                time.sleep(0.1)


def test_both_ports_speak_tls(
    tmp_path: Path, start_services: StartServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = make_certificate(tmp_path)
    services = start_services([])
    server = TlsDurably(tmp_path / "server", ca, cert, key)
    server.start()
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=30) as client:
            r = client.post(f"{server.admin_url}/deployments", json={"uri": services.url})
            assert r.status_code == 201, r.text
            assert client.get(f"{server.admin_url}/version").json()["ingress_endpoint"].startswith(
                "https://"
            )
        # without the CA the certificate is not trusted
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.admin_url}/health", timeout=10)
        # plain HTTP on a TLS port gets no answer
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.ingress_port}/restate/health", timeout=10)
        with Client(server.ingress_url, admin_url=server.admin_url, ca_file=str(ca)) as c:
            assert c.service("Greeter").call("greet", "TLS", output=str) == "Hello TLS! (1)"
        monkeypatch.setenv("DURABLY_CA_FILE", str(ca))
        with Client(server.ingress_url) as c:
            assert c.object("Counter", "t").call("add", 3, output=int) == 3
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"), DURABLY_CA_FILE=str(ca))
        r2 = subprocess.run(
            [sys.executable, "-m", "durably", "services", "list", "--admin-url", server.admin_url],
            capture_output=True, text=True, env=env, timeout=60,
        )
        assert r2.returncode == 0 and "Greeter" in r2.stdout, r2.stderr
    finally:
        server.close()


def test_cert_without_key_is_one_line(tmp_path: Path) -> None:
    _, cert, _ = make_certificate(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "durably", "serve", "--data-dir", str(tmp_path / "d"),
         "--tls-cert-file", str(cert)],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src")),
    )
    assert r.returncode == 2
    assert r.stderr.strip() == "durably: --tls-cert-file and --tls-key-file go together"
