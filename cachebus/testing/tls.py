"""Throw-away TLS certificates made with the ``openssl`` command (a CA and a server cert)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cachebus.testing.server import TLSFiles

__all__ = ["make_certificates"]


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError(
            "openssl was not found on PATH; install it (Debian: apt install openssl)"
        )
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path, hostname: str = "localhost") -> TLSFiles:
    """Create ``ca.crt``, ``server.crt`` and ``server.key`` valid for ``hostname`` and 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=directory)
    _openssl(
        "req", "-x509", "-new", "-nodes", "-key", "ca.key", "-sha256", "-days", "2",
        "-subj", "/CN=cachebus-test-ca", "-out", "ca.crt", cwd=directory,
    )  # fmt: skip
    _openssl("genrsa", "-out", "server.key", "2048", cwd=directory)
    _openssl(
        "req", "-new", "-key", "server.key", "-subj", f"/CN={hostname}", "-out", "server.csr",
        cwd=directory,
    )  # fmt: skip
    (directory / "san.ext").write_text(f"subjectAltName=DNS:{hostname},IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-sha256",
        "-extfile", "san.ext", cwd=directory,
    )  # fmt: skip
    return TLSFiles(
        cert=directory / "server.crt", key=directory / "server.key", ca=directory / "ca.crt"
    )
