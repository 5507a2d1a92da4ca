"""The TLS rules every connection string must meet: the primary's minimum, for replicas and sync sources alike.

libpq's sslmode values form a ladder (``disable`` < ``allow`` < ``prefer`` < ``require`` < ``verify-ca`` <
``verify-full``). Only ``verify-full`` authenticates the server: ``require`` encrypts but accepts any certificate
(with a root certificate configured libpq checks the issuer, as ``verify-ca`` does), and neither compares the
certificate's names with the host dialled, so a server with a certificate of another host is accepted.

A second connection (a read replica, a sync source) must not be weaker than the primary: reads carry the same data.
``check_tls_minimum`` refuses one whose sslmode is below the primary's and gives one that names no sslmode the
primary's TLS options (mode, root certificate, client certificate and key). A primary below ``require`` sets no
minimum, and its strings are returned as given.

Example::

    >>> check_tls_minimum("postgresql://reader@replica-1/luminar_production", primary, "LUMINAR_DB_REPLICA_URLS")
    'host=replica-1 user=reader dbname=luminar_production sslmode=verify-full sslrootcert=/etc/luminar/ca.crt ...'
"""

from __future__ import annotations

from typing import Protocol

from luminar_store.errors import ConfigError

__all__ = ["SSL_MODES", "STRONG_SSL_MODES", "TLS_KEYS", "ssl_rank", "check_tls_minimum"]

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
#: The modes that never fall back to clear text.
STRONG_SSL_MODES = ("require", "verify-ca", "verify-full")
#: The libpq keys that make up a connection's TLS, inherited together by a connection string that names no sslmode.
TLS_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey")


class _Primary(Protocol):
    sslmode: str
    sslrootcert: str | None
    sslcert: str | None
    sslkey: str | None


def ssl_rank(mode: str) -> int:
    """The place of ``mode`` on the ladder (0 for ``disable``). Raises ``ConfigError`` for an unknown mode."""
    try:
        return SSL_MODES.index(str(mode).strip().lower())
    except ValueError:
        raise ConfigError(f"sslmode must be one of {', '.join(SSL_MODES)}, got {mode!r}") from None


def check_tls_minimum(url: str, primary: _Primary, variable: str, *, entry: int | None = None) -> str:
    """The connection string ``url`` (a replica or sync source named by ``variable``) with the primary's TLS options
    filled in where it names none, as a libpq conninfo string.

    Raises ``ConfigError`` naming ``variable`` (and its ``entry`` number, from 1, in a list) and the fix when the
    string is not a connection string or its sslmode is weaker than the primary's. The string itself (which may hold
    a password) is never part of a message.
    """
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    which = f"{variable} entry {entry}" if entry is not None else variable
    try:
        parts = conninfo_to_dict(url)
    except Exception:  # psycopg.ProgrammingError: its message may echo the string (and a password)
        raise ConfigError(f"{which} is not a valid connection string; use "
                          "postgresql://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=verify-full") from None
    own = str(parts.get("sslmode") or "").strip().lower()
    if ssl_rank(primary.sslmode) < ssl_rank("require"):
        return url  # the primary itself may travel in clear text: there is no minimum to hold
    if own and ssl_rank(own) < ssl_rank(primary.sslmode):
        raise ConfigError(
            f"{which} gives sslmode={own}, weaker than the primary's sslmode={primary.sslmode}: every replica and "
            f"sync source must meet the primary's minimum; set sslmode={primary.sslmode} in it, or leave sslmode out "
            "to inherit the primary's TLS settings")
    missing: dict[str, str] = {}
    if not own:
        missing = {k: str(getattr(primary, k)) for k in TLS_KEYS if getattr(primary, k) and k not in parts}
    else:  # its own mode, but the primary's certificates where it names none
        missing = {k: str(getattr(primary, k)) for k in TLS_KEYS[1:] if getattr(primary, k) and k not in parts}
    return make_conninfo(url, **missing) if missing else url
