"""The variables settings are read from, where each came from, and which environment it was written for.

A variable set in the process environment was written for the environment that ``LUMINAR_ENV`` names there (else
the one ``.env`` names, else ``local``); a variable that ``.env`` supplied was written for the ``LUMINAR_ENV`` of that
file (``local`` when it names none). ``load_dotenv_file`` records which names the file supplied, so that settings
can tell a value meant for another environment from one meant for theirs.

The names operators already have from the network's node code are read too (``DB_MAX_OVERFLOW``, ``SSL_MODE``,
``LUMINAR_LOCAL_DB_*``, ``LUMINAR_DB_READ_HOST``, ``DATABASE_SSL_CERT`` ...); a ``LUMINAR_*`` or ``DB_*`` name that
nothing reads is named in a warning (logger ``luminar_store.config``) instead of being ignored silently.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from luminar_store.config.environments import ENVIRONMENTS, environment

__all__ = ["Origins", "DotenvRecord", "KNOWN", "loaded_dotenv", "load_dotenv_file", "warn_unknown"]

log = logging.getLogger("luminar_store.config")

# Suffixes of an environment's own variables (LUMINAR_TEST_DB_ + NAME) and the field each sets.
SCOPED_SUFFIXES = {"HOST": "host", "PORT": "port", "NAME": "name", "USER": "user", "PASSWORD": "password",
                   "SSLMODE": "sslmode"}
_GENERAL = {
    "LUMINAR_ENV", "DATABASE_URL",
    "LUMINAR_DB_HOST", "LUMINAR_DB_PORT", "LUMINAR_DB_NAME", "LUMINAR_DB_USER", "LUMINAR_DB_PASSWORD",
    "LUMINAR_DB_OWNER", "LUMINAR_DB_OWNER_PASSWORD", "LUMINAR_DB_ADMIN_PASSWORD",
    "LUMINAR_DB_SSLMODE", "LUMINAR_DB_SSLROOTCERT", "LUMINAR_DB_SSLCERT", "LUMINAR_DB_SSLKEY",
    "LUMINAR_DB_CONNECT_TIMEOUT", "LUMINAR_DB_REPLICA_URLS", "LUMINAR_DB_READ_HOST", "LUMINAR_DB_ADMIN_URL",
    "LUMINAR_DB_REPLICA_COOLDOWN", "LUMINAR_DB_REPLICA_MAX_LAG",
    "LUMINAR_DB_BACKEND", "LUMINAR_DB_PGBOUNCER", "LUMINAR_DB_DIRECT_URL",
    "SSL_MODE", "DATABASE_SSL_CERT", "DATABASE_SSL_KEY", "DATABASE_SSL_ROOT_CERT",
    "POOL_SIZE", "MAX_OVERFLOW", "POOL_TIMEOUT", "POOL_RECYCLE",
    "DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_POOL_TIMEOUT", "DB_POOL_RECYCLE",
    "LUMINAR_RETENTION_DAYS", "LUMINAR_MIGRATIONS_DIR", "LUMINAR_MIGRATE_WAIT", "LUMINAR_MIGRATE_LOCK_TIMEOUT",
    "LUMINAR_LOCAL_DIR", "LUMINAR_PG_BINDIR", "LUMINAR_PG_USER", "LUMINAR_NAIVE_TIMESTAMPS",
    "LUMINAR_CLAIM_LEASE_MINUTES", "LUMINAR_ALLOWED_CIDRS", "LUMINAR_PSEUDONYMIZE", "LUMINAR_PSEUDONYM_KEY",
    "LUMINAR_SYNC_SOURCE_URL", "LUMINAR_SYNC_SOURCE_ENV",
    "LUMINAR_MAP_TILES_URL", "LUMINAR_MAP_TILES_ATTRIBUTION",
    "LUMINAR_LOG_FORMAT", "LUMINAR_METRICS_DB_URL", "LUMINAR_METRICS_HOST", "LUMINAR_METRICS_PORT",
    "LUMINAR_METRICS_DB_PASSWORD", "LUMINAR_GRAFANA_DB_PASSWORD",
}
#: Every LUMINAR_* / DB_* name luminar_store reads.
KNOWN = frozenset(_GENERAL | {environment(e).prefix + s for e in ENVIRONMENTS if environment(e).prefix
                              for s in SCOPED_SUFFIXES})
_CHECKED_PREFIXES = ("LUMINAR_", "DB_")
_warned: set[str] = set()


@dataclass(frozen=True)
class DotenvRecord:
    """What a ``.env`` file supplied: its path, the values it set (never shown), and the ``LUMINAR_ENV`` it names."""

    path: str
    values: Mapping[str, str] = field(default_factory=dict, repr=False)
    env: str | None = None


_loaded: DotenvRecord | None = None


def loaded_dotenv() -> DotenvRecord | None:
    """The ``.env`` that ``load_dotenv_file`` read into this process, if any."""
    return _loaded


def _norm(value: str | None) -> str | None:
    return value.strip().lower() or None if value is not None else None


@dataclass(frozen=True)
class Origins:
    """The variables in force and where each came from (``.env`` or the environment)."""

    environ: Mapping[str, str]
    dotenv: DotenvRecord | None = None

    @property
    def luminar_env(self) -> str | None:
        """``LUMINAR_ENV`` as set (normalised), or None."""
        return _norm(self.environ.get("LUMINAR_ENV"))

    def from_dotenv(self, name: str) -> bool:
        """True when ``name`` holds the value a ``.env`` file supplied (not one set since)."""
        return (self.dotenv is not None and name in self.dotenv.values
                and self.environ.get(name) == self.dotenv.values[name])

    def written_for(self, name: str) -> str:
        """The environment the variable ``name`` was written for (see the module text)."""
        if self.from_dotenv(name):
            return _norm(self.dotenv.env) or "local"  # type: ignore[union-attr]
        return self.luminar_env or "local"

    def where(self, name: str) -> str:
        """``"from .env at PATH"`` or ``"from the environment"``: for messages."""
        return f"from {self.dotenv.path}" if self.from_dotenv(name) else "from the environment"  # type: ignore


def warn_unknown(environ: Mapping[str, str]) -> list[str]:
    """Log a warning (once per name and process) for each ``LUMINAR_*`` / ``DB_*`` variable that nothing reads,
    with the closest known name. Returns the unknown names."""
    unknown = sorted(n for n in environ if n.startswith(_CHECKED_PREFIXES) and n not in KNOWN)
    for name in unknown:
        if name in _warned:
            continue
        _warned.add(name)
        close = difflib.get_close_matches(name, KNOWN, n=1)
        hint = f"; did you mean {close[0]}?" if close else "; see .env.example for the names luminar_store reads"
        log.warning("%s is set but luminar_store reads no such setting (ignored)%s", name, hint)
    return unknown


def load_dotenv_file() -> str | None:
    """Read ``.env`` from the working directory upwards into ``os.environ`` without overriding anything set.

    For entry points only (CLIs, scripts, the ``db`` facade's first call); library code never reads files behind
    the caller's back. Records which names the file supplied (see ``loaded_dotenv``). Returns the path read, or
    ``None``.
    """
    global _loaded
    from dotenv import dotenv_values, find_dotenv

    path = find_dotenv(usecwd=True)
    if not path:
        return None
    values = dotenv_values(path)
    supplied = {name: value for name, value in values.items() if name not in os.environ and value is not None}
    os.environ.update(supplied)
    previous = dict(_loaded.values) if _loaded is not None and _loaded.path == path else {}
    _loaded = DotenvRecord(path=path, values={**previous, **supplied}, env=values.get("LUMINAR_ENV"))
    return path
