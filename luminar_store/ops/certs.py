"""Certificates for TLS between the nodes and the server, issued with the ``openssl`` command (no Python dependency).

Three kinds, all signed by one certificate authority (CA) that the operator keeps:

* the CA (``ca.crt``, ``ca.key``): the server trusts client certificates it signed (``ssl_ca_file``), and clients
  trust the server's certificate through it (``LUMINAR_DB_SSLROOTCERT``);
* the server's certificate (``server.crt``, ``server.key``), naming every host name and address clients dial
  (subjectAltName): ``sslmode=verify-full`` refuses a server whose certificate does not name the host dialled;
* one certificate per node (``<login>.crt``, ``<login>.key``) whose common name (CN) is the node's database login:
  ``pg_hba.conf``'s ``cert`` and ``clientcert=verify-full`` accept it for that login only.

Private keys are elliptic-curve (P-256) keys written readable by their owner only (0600), and never printed; an
existing key is never overwritten (remove it to issue again).

Example::

    >>> ca = make_ca(Path("tls"))
    >>> issue_server_cert(Path("tls"), ca, ["db.luminar.network", "10.0.0.5"])
    >>> issue_node_cert(Path("tls"), ca, "miner_7")
    CertPair(cert=PosixPath('tls/miner_7.crt'), key=PosixPath('tls/miner_7.key'))
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from luminar_store.errors import ConfigError, OperationError, ValidationError

__all__ = ["CertPair", "LOGIN_RE", "make_ca", "issue_server_cert", "issue_node_cert", "certificate_cn",
           "subject_alt_names", "check_pair"]

#: A database login a node certificate may name (a PostgreSQL role name without quoting).
LOGIN_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_HOST_RE = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                      r"[A-Za-z0-9])?)*")


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key, as files."""

    cert: Path
    key: Path


def _openssl(*args: str | Path, what: str) -> str:
    """Run ``openssl`` with ``args``; its output. Raises ``OperationError`` naming ``what`` and openssl's reason."""
    exe = shutil.which("openssl")
    if exe is None:
        raise OperationError("the openssl command is not installed; install it (apt-get install openssl)")
    done = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise OperationError(f"openssl could not {what}: {lines[-1] if lines else 'no output'}")
    return done.stdout


def _new_key(path: Path) -> None:
    """A new P-256 private key at ``path``, 0600 from its first byte. Raises ``OperationError`` when one exists."""
    if path.exists():
        raise OperationError(f"{path} already exists; keep it, or remove it (and its certificate) to issue anew")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # openssl then writes into a 0600 file
    try:
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path,
                 what=f"make the key {path}")
    except OperationError:
        path.unlink(missing_ok=True)
        raise
    path.chmod(0o600)


def _sign(csr_subject: str, key: Path, out: Path, extensions: str, *, days: int,
          ca: CertPair | None) -> None:
    """Write the certificate ``out`` for ``key`` with subject ``csr_subject`` and ``extensions`` (an openssl
    extension section), signed by ``ca`` (self-signed when None)."""
    with tempfile.TemporaryDirectory(prefix="luminar-tls-") as tmp:
        csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        ext.write_text(extensions)
        _openssl("req", "-new", "-key", key, "-subj", csr_subject, "-out", csr, what=f"make a request for {out}")
        signer = ["-signkey", key] if ca is None else ["-CA", ca.cert, "-CAkey", ca.key]
        _openssl("x509", "-req", "-in", csr, *signer, "-set_serial", str(secrets.randbits(120)), "-days", str(days),
                 "-sha256", "-extfile", ext, "-out", out, what=f"sign {out}")
    out.chmod(0o644)


def _check_days(days: int) -> None:
    if not isinstance(days, int) or days < 1:
        raise ValidationError("days", f"must be a whole number of days, at least 1, got {days!r}")


def make_ca(directory: Path, *, name: str = "Luminar CA", days: int = 3650) -> CertPair:
    """A new certificate authority in ``directory``: ``ca.crt`` and ``ca.key`` (0600). Keep ``ca.key`` offline.

    Raises ``OperationError`` when ``ca.key`` already exists (never overwritten) or openssl fails,
    ``ValidationError`` for a name holding ``/`` or a newline, or a bad ``days``.
    """
    if not name or any(c in name for c in "/\n\\"):
        raise ValidationError("name", f"must be a plain name without '/', '\\' or newlines, got {name!r}")
    _check_days(days)
    pair = CertPair(Path(directory) / "ca.crt", Path(directory) / "ca.key")
    _new_key(pair.key)
    _sign(f"/CN={name}", pair.key, pair.cert, "basicConstraints = critical, CA:TRUE\n"
          "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n", days=days, ca=None)
    return pair


def subject_alt_names(names: list[str]) -> str:
    """The subjectAltName value for host names and IP addresses (``DNS:db.example,IP:10.0.0.5``).

    Raises ``ValidationError`` (field ``names``) for an empty list or a value that is neither a host name nor an IP
    address.
    """
    if not names:
        raise ValidationError("names", "give at least one host name or IP address the clients dial")
    out = []
    for name in names:
        try:
            out.append(f"IP:{ipaddress.ip_address(name.strip())}")
            continue
        except ValueError:
            pass
        if not _HOST_RE.fullmatch(name.strip()):
            raise ValidationError("names", f"{name!r} is neither a host name nor an IP address")
        out.append(f"DNS:{name.strip().lower()}")
    return ",".join(out)


def issue_server_cert(directory: Path, ca: CertPair, names: list[str], *, days: int = 825) -> CertPair:
    """The server's certificate ``server.crt`` and key ``server.key`` (0600) in ``directory``, naming ``names``
    (host names and IP addresses clients dial; the first is also the CN), signed by ``ca``.

    Raises ``ValidationError`` for a bad name or ``days``, ``OperationError`` when ``server.key`` exists or openssl
    fails (a CA file missing, say).
    """
    san = subject_alt_names(names)
    _check_days(days)
    pair = CertPair(Path(directory) / "server.crt", Path(directory) / "server.key")
    _new_key(pair.key)
    _sign(f"/CN={names[0].strip()}", pair.key, pair.cert,
          f"basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n"
          f"extendedKeyUsage = serverAuth\nsubjectAltName = {san}\n", days=days, ca=ca)
    return pair


def issue_node_cert(directory: Path, ca: CertPair, login: str, *, days: int = 365) -> CertPair:
    """A node's client certificate ``<login>.crt`` and key ``<login>.key`` (0600) in ``directory``; its CN is
    ``login``, the database role the node logs in as. Give the node both files and the CA's certificate.

    Raises ``ValidationError`` (field ``login``) for a login that is not a plain role name, ``OperationError`` when
    the key exists or openssl fails.
    """
    if not isinstance(login, str) or not LOGIN_RE.fullmatch(login):
        raise ValidationError("login", f"must be a database role name of a-z, 0-9 and _ (as miner_7), got {login!r}")
    _check_days(days)
    pair = CertPair(Path(directory) / f"{login}.crt", Path(directory) / f"{login}.key")
    _new_key(pair.key)
    _sign(f"/CN={login}", pair.key, pair.cert, "basicConstraints = CA:FALSE\n"
          "keyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n", days=days, ca=ca)
    return pair


def certificate_cn(path: Path | str) -> str | None:
    """The common name (CN) of the certificate at ``path``; None when the file cannot be read as one (never
    raises: it serves error messages)."""
    try:
        subject = _openssl("x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", path, what="read")
    except (OperationError, OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(?:^|[,=\s])CN=((?:[^,\\]|\\.)*)", subject.strip().removeprefix("subject="))
    return match.group(1).strip() if match else None


def check_pair(cert: Path, key: Path, ca: Path) -> None:
    """Check what a server is about to load: ``cert`` and ``ca`` are PEM certificates, ``key`` is the private key of
    ``cert`` and has no passphrase (a server cannot ask for one on reload).

    Raises ``ConfigError`` naming the file and what is wrong with it; ``OperationError`` when openssl is missing.
    """
    for path in (cert, ca):
        try:
            _openssl("x509", "-noout", "-in", path, what=f"read {path}")
        except OperationError:
            raise ConfigError(f"{path} is not a PEM certificate; give the file `luminar-db tls` wrote") from None
    try:
        from_key = _openssl("pkey", "-pubout", "-in", key, "-passin", "pass:", what=f"read {key}")
    except OperationError:
        raise ConfigError(f"{key} is not a private key without a passphrase; the server reads it unattended "
                          "(remove the passphrase: openssl pkey -in KEY -out KEY.plain)") from None
    if _openssl("x509", "-noout", "-pubkey", "-in", cert, what=f"read {cert}").strip() != from_key.strip():
        raise ConfigError(f"{key} is not the key of {cert}; give the key issued with that certificate")
