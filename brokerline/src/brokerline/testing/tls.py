"""A throwaway certificate authority for TLS tests: a CA, a server and a client certificate.

Made with the `openssl` command (present on Linux and macOS; the library does not depend on
a Python crypto package for a test helper). Keys are EC P-256 in PKCS#8 PEM, which both the
Java broker (Pulsar's SecurityUtility reads RSA and EC PKCS#8) and the C++ client load; the
server certificate names localhost and 127.0.0.1, so hostname verification can be on.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from brokerline.core.errors import BrokerError

DAYS = "2"  # long enough for any test session, short enough to be useless if it leaks


@dataclass(frozen=True)
class TestCertificates:
    """PEM files: the CA's certificate (the trust file), and a server and a client pair."""

    __test__ = False  # not a pytest test class, whatever its name

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def missing_openssl() -> str | None:
    """One sentence when the `openssl` command is absent, else None."""
    if shutil.which("openssl") is None:
        return "the openssl command is needed to make test certificates; install OpenSSL"
    return None


def openssl(*args: str, cwd: Path) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise BrokerError(
            f"openssl {args[0]} failed while making test certificates: "
            f"{detail.decode(errors='replace').strip() or exc}"
        ) from None


def new_key(path: Path) -> None:
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", str(path), cwd=path.parent)


def signed_certificate(
    directory: Path, name: str, subject: str, extensions: str, ca: Path, ca_key: Path
) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem"))
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    new_key(key)
    openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr), cwd=directory)
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-set_serial", str(secrets.randbits(63)), "-days", DAYS, "-sha256",
            "-extfile", str(ext), "-out", str(cert), cwd=directory)
    csr.unlink()
    ext.unlink()
    return cert, key


def make_test_certificates(
    directory: Path, client_role: str = "report-pipeline"
) -> TestCertificates:
    """A new CA in `directory`, a server certificate for localhost/127.0.0.1, and a client
    certificate whose common name is `client_role` (the role Pulsar's TLS authentication
    would take from it)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    new_key(ca_key)
    openssl("req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=brokerline test CA",
            "-days", DAYS, "-sha256", "-out", str(ca), cwd=directory)
    server_cert, server_key = signed_certificate(
        directory, "server", "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n", ca, ca_key,
    )
    client_cert, client_key = signed_certificate(
        directory, "client", f"/CN={client_role}", "extendedKeyUsage=clientAuth\n", ca, ca_key,
    )
    return TestCertificates(ca, server_cert, server_key, client_cert, client_key)
