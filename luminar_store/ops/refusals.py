"""Why a server refused a connection over TLS, in one sentence that names the cause and the setting to change.

libpq reports these refusals as text only: the server's FATAL messages all carry one SQLSTATE (28000) and the
client-side ones (certificate checks, key files) none, and psycopg folds every attempt into one
``OperationalError``. So, unlike errors of statements (translated by SQLSTATE and constraint name), these are
recognised by libpq's and the server's own wording, which has been stable across PostgreSQL 12-17; a text not
recognised here falls back to the plain "cannot reach" message of ``luminar_store.ops.connect``.

Example::

    >>> tls_refusal(exc, settings)
    'the server requires a client certificate: set LUMINAR_DB_SSLCERT and LUMINAR_DB_SSLKEY ...'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

__all__ = ["tls_refusal"]

_HBA = re.compile(r'(?:no pg_hba\.conf entry for|pg_hba\.conf rejects connection for) host "([^"]+)", user "[^"]*", '
                  r'database "[^"]*", (no encryption|SSL encryption|GSS encryption)')
_AUTH_FAILED = re.compile(r'(password|certificate) authentication failed for user "([^"]+)"')
_NAME_MISMATCH = re.compile(r'server certificate for "([^"]+)"( \(and \d+ other names?\))? does not match host '
                            r'name "([^"]+)"')
_ROOT_MISSING = re.compile(r'root certificate file "([^"]+)" does not exist')
_KEY_FILE = re.compile(r'(private key file|certificate file|could not (?:open|load) (?:private key|certificate) '
                       r'file)[^:]*"([^"]+)"[^;]*')


class _TlsSettings(Protocol):
    user: str
    sslmode: str
    sslrootcert: str | None
    sslcert: str | None
    sslkey: str | None


def _server_text(exc: BaseException) -> str:
    """Every line of the error, each without libpq's 'connection to server ... failed:' preamble."""
    return " ".join(re.sub(r'^connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed: ', "", line.strip())
                    for line in str(exc).splitlines() if line.strip())


def tls_refusal(exc: BaseException, settings: _TlsSettings) -> str | None:
    """The cause of a refused connection when it is about TLS, client certificates or the address allow-list, as
    one line naming the cause and the fix (never the password: none of these texts holds it); None otherwise."""
    text = _server_text(exc)
    if "connection requires a valid client certificate" in text:
        if settings.sslcert and not Path(settings.sslcert).is_file():
            return (f"the server requires a client certificate, and LUMINAR_DB_SSLCERT={settings.sslcert} does not "
                    "exist: point it (and LUMINAR_DB_SSLKEY) at the node's certificate and key")
        return ("the server requires a client certificate: set LUMINAR_DB_SSLCERT and LUMINAR_DB_SSLKEY to the "
                f"node's certificate and key (its CN the login, {settings.user}; `luminar-db tls node-cert`)")
    found = _AUTH_FAILED.search(text)
    if found and settings.sslcert:
        from luminar_store.ops.certs import certificate_cn

        cn = certificate_cn(settings.sslcert)
        if cn is not None and cn != found.group(2):
            return (f"certificate authentication failed for user {found.group(2)}: the certificate's CN is {cn} "
                    f"(LUMINAR_DB_SSLCERT={settings.sslcert}); use the certificate issued for {found.group(2)}")
    found = _HBA.search(text)
    if found:
        host, encryption = found.group(1), found.group(2)
        if encryption == "no encryption":
            return (f"the server accepts only TLS connections and this one was in clear text "
                    f"(sslmode={settings.sslmode}): set LUMINAR_DB_SSLMODE=verify-full with LUMINAR_DB_SSLROOTCERT")
        return (f"the server refused {host}: no pg_hba.conf entry allows this address (the allow-list, "
                "LUMINAR_ALLOWED_CIDRS on the server); connect from an allowed address or have it added")
    if "alert unknown ca" in text or "alert bad certificate" in text or "alert certificate unknown" in text:
        return (f"the server does not trust the client certificate (LUMINAR_DB_SSLCERT={settings.sslcert}): it was "
                "not issued by the server's CA (ssl_ca_file); use a certificate from `luminar-db tls node-cert` "
                "with that CA")
    if "alert certificate expired" in text:
        return (f"the server refused the client certificate (LUMINAR_DB_SSLCERT={settings.sslcert}): it has "
                "expired; issue a new one with `luminar-db tls node-cert`")
    found = _NAME_MISMATCH.search(text)
    if found:
        return (f"the server's certificate names {found.group(1)}{found.group(2) or ''}, not {found.group(3)}, the "
                f"host dialled (sslmode={settings.sslmode} checks the name): connect by a name the certificate lists "
                f"(LUMINAR_DB_HOST), or reissue the server's certificate for {found.group(3)}")
    if "certificate verify failed" in text:
        return (f"the server's certificate was not issued by the CA of LUMINAR_DB_SSLROOTCERT="
                f"{settings.sslrootcert}: this may not be the server you meant; set LUMINAR_DB_SSLROOTCERT to the "
                "certificate of the CA that signed the server's")
    found = _ROOT_MISSING.search(text)
    if found:
        return (f"sslmode={settings.sslmode} needs the CA's certificate and {found.group(1)} does not exist: set "
                "LUMINAR_DB_SSLROOTCERT to the CA's certificate (ca.crt)")
    if "server does not support SSL, but SSL was required" in text:
        return ("the server does not offer TLS (ssl = off) and the settings require it: prepare the server with "
                "`luminar-db tls prepare-server`")
    found = _KEY_FILE.search(text)
    if found:
        variable = "LUMINAR_DB_SSLKEY" if "private key" in found.group(1) else "LUMINAR_DB_SSLCERT"
        return f"{variable}: {found.group(0).strip()}; the key must be the node's own and readable by it only (0600)"
    return None
