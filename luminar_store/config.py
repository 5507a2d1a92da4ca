"""Settings per ``LUMINAR_ENV`` (local, testing, staging, production), read from the environment.

``load_settings()`` reads ``os.environ`` only; entry points call ``load_dotenv_file()`` first so that a ``.env``
fills in what the environment does not already set (it never overrides). ``DATABASE_URL``, when set, overrides the
``LUMINAR_DB_*`` connection variables. Every refusal is a ``ConfigError`` naming the variable and the fix, and no
string this module produces for people (repr, ``safe_dsn``) contains the password.

Example::

    >>> s = load_settings(environ={"LUMINAR_ENV": "local"})
    >>> s.safe_dsn()
    'postgresql://luminar_dev:***@localhost:5432/luminar_local?sslmode=disable'
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from urllib.parse import quote

from luminar_store.errors import ConfigError

__all__ = [
    "ENVIRONMENTS",
    "DEV_PASSWORD",
    "Settings",
    "load_settings",
    "load_dotenv_file",
]

ENVIRONMENTS = ("local", "testing", "staging", "production")
DEV_PASSWORD = "dev_password"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_STRONG_SSL = ("require", "verify-ca", "verify-full")

# Defaults of the specification, per environment. Pool figures: size, overflow, timeout (s), recycle (s).
_DEFAULTS: dict[str, dict[str, object]] = {
    "local": dict(host="localhost", port=5432, name="luminar_local", user="luminar_dev", password=DEV_PASSWORD,
                  sslmode="disable", pool_size=10, max_overflow=5, pool_timeout=30.0, pool_recycle=3600.0),
    "testing": dict(host="localhost", port=5433, name="luminar_test", user="luminar_dev", password=DEV_PASSWORD,
                    sslmode="disable", pool_size=2, max_overflow=3, pool_timeout=10.0, pool_recycle=600.0),
    "staging": dict(host="localhost", port=5432, name="luminar_staging", user="luminar_subnet", password="",
                    sslmode="require", pool_size=20, max_overflow=10, pool_timeout=60.0, pool_recycle=7200.0),
    "production": dict(host="central-db.luminar.network", port=5432, name="luminar_production",
                       user="luminar_subnet", password="", sslmode="require", pool_size=50, max_overflow=20,
                       pool_timeout=60.0, pool_recycle=7200.0),
}

DEFAULT_RETENTION_DAYS = 365


@dataclass(frozen=True)
class Settings:
    """Connection, TLS and pool settings in force. ``repr()`` never shows the password."""

    env: str
    host: str
    port: int
    name: str
    user: str
    password: str = field(repr=False)
    sslmode: str
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    pool_size: int = 10
    max_overflow: int = 5
    pool_timeout: float = 30.0
    pool_recycle: float = 3600.0
    replica_urls: tuple[str, ...] = field(default=(), repr=False)
    retention_days: int = DEFAULT_RETENTION_DAYS
    connect_timeout: int = 10
    from_database_url: bool = False

    # -- connection strings -------------------------------------------------------------------------------------
    def connect_kwargs(self, *, dbname: str | None = None) -> dict[str, object]:
        """Keyword arguments for ``psycopg.connect`` (password included: never log them)."""
        kwargs: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "dbname": dbname or self.name,
            "user": self.user,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout,
            "application_name": "luminar_store",
        }
        if self.password:
            kwargs["password"] = self.password
        for key in ("sslrootcert", "sslcert", "sslkey"):
            value = getattr(self, key)
            if value:
                kwargs[key] = value
        return kwargs

    def conninfo(self, *, dbname: str | None = None) -> str:
        """A libpq conninfo string with the password: for connecting, never for printing."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**{k: str(v) for k, v in self.connect_kwargs(dbname=dbname).items()})

    def safe_dsn(self, *, dbname: str | None = None) -> str:
        """The connection as a URL with the password replaced by ``***``: safe for logs and messages."""
        secret = ":***" if self.password else ""
        return (f"postgresql://{quote(self.user)}{secret}@{self.host}:{self.port}/"
                f"{quote(dbname or self.name)}?sslmode={self.sslmode}")

    def describe(self) -> str:
        """One line naming host, port and database (for 'cannot reach' messages)."""
        return f"host {self.host}, port {self.port}, database {self.name}"

    @property
    def pool_max_size(self) -> int:
        return self.pool_size + self.max_overflow

    def with_database(self, name: str) -> Settings:
        """The same settings pointed at another database of the same server."""
        return replace(self, name=name)

    def public_dict(self) -> dict[str, object]:
        """Every setting, password hidden: for ``status`` printouts and JSON."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "password":
                value = "***" if value else ""
            elif f.name == "replica_urls":
                value = len(value)
            out[f.name] = value
        return out


# -- parsing ------------------------------------------------------------------------------------------------------
def _int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 1, maximum: int | None = None) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}; set it like {name}={default}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name} must be {bounds}, got {value}; set it like {name}={default}")
    return value


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}; set it like {name}={default:g}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _from_database_url(url: str) -> dict[str, object]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # psycopg.ProgrammingError: its message may echo the URL, so it is not chained
        raise ConfigError(
            "DATABASE_URL is not a valid connection string; use postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        ) from None
    out: dict[str, object] = {}
    mapping = {"host": "host", "port": "port", "dbname": "name", "user": "user", "password": "password",
               "sslmode": "sslmode", "sslrootcert": "sslrootcert", "sslcert": "sslcert", "sslkey": "sslkey"}
    for key, target in mapping.items():
        if parts.get(key) not in (None, ""):
            out[target] = parts[key]
    if "port" in out:
        try:
            out["port"] = int(str(out["port"]))
        except ValueError:
            raise ConfigError("DATABASE_URL has a port that is not a whole number") from None
    return out


def load_settings(env: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings for ``env`` (default: ``LUMINAR_ENV``, else ``local``) from ``environ`` (``os.environ``).

    Raises ``ConfigError`` for an unknown environment, a malformed number, a weak sslmode or a missing or
    development password in production.
    """
    environ = os.environ if environ is None else environ
    env = (env or environ.get("LUMINAR_ENV") or "local").strip().lower()
    if env not in ENVIRONMENTS:
        raise ConfigError(f"LUMINAR_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")
    d = dict(_DEFAULTS[env])

    values: dict[str, object] = {
        "host": environ.get("LUMINAR_DB_HOST") or d["host"],
        "port": _int(environ, "LUMINAR_DB_PORT", int(d["port"]), maximum=65535),  # type: ignore[arg-type]
        "name": environ.get("LUMINAR_DB_NAME") or d["name"],
        "user": environ.get("LUMINAR_DB_USER") or d["user"],
        "password": environ.get("LUMINAR_DB_PASSWORD", d["password"]),
        "sslmode": (environ.get("LUMINAR_DB_SSLMODE") or d["sslmode"]).strip().lower(),
        "sslrootcert": environ.get("LUMINAR_DB_SSLROOTCERT") or None,
        "sslcert": environ.get("LUMINAR_DB_SSLCERT") or None,
        "sslkey": environ.get("LUMINAR_DB_SSLKEY") or None,
    }
    from_url = bool(environ.get("DATABASE_URL"))
    if from_url:
        values.update(_from_database_url(environ["DATABASE_URL"]))

    if values["sslmode"] not in SSL_MODES:
        raise ConfigError(f"LUMINAR_DB_SSLMODE must be one of {', '.join(SSL_MODES)}, got {values['sslmode']!r}")

    pool_size = _int(environ, "POOL_SIZE", int(d["pool_size"]))  # type: ignore[arg-type]
    # DB_POOL_SIZE is the specification's out-of-memory knob: it wins over POOL_SIZE.
    pool_size = _int(environ, "DB_POOL_SIZE", pool_size)
    replicas = tuple(u.strip() for u in environ.get("LUMINAR_DB_REPLICA_URLS", "").split(",") if u.strip())

    settings = Settings(
        env=env,
        pool_size=pool_size,
        max_overflow=_int(environ, "MAX_OVERFLOW", int(d["max_overflow"]), minimum=0),  # type: ignore[arg-type]
        pool_timeout=_seconds(environ, "POOL_TIMEOUT", float(d["pool_timeout"])),  # type: ignore[arg-type]
        pool_recycle=_seconds(environ, "POOL_RECYCLE", float(d["pool_recycle"])),  # type: ignore[arg-type]
        replica_urls=replicas,
        retention_days=_int(environ, "LUMINAR_RETENTION_DAYS", DEFAULT_RETENTION_DAYS),
        connect_timeout=_int(environ, "LUMINAR_DB_CONNECT_TIMEOUT", 10),
        from_database_url=from_url,
        **values,  # type: ignore[arg-type]
    )
    _check_production(settings)
    return settings


def _check_production(s: Settings) -> None:
    if s.env != "production":
        return
    where = "DATABASE_URL" if s.from_database_url else "LUMINAR_DB_SSLMODE"
    if s.sslmode not in _STRONG_SSL:
        raise ConfigError(
            f"production requires TLS: {where} gives sslmode={s.sslmode}; use require, verify-ca or verify-full"
        )
    where = "DATABASE_URL" if s.from_database_url else "LUMINAR_DB_PASSWORD"
    if not s.password:
        raise ConfigError(f"production requires a password: set {where} (see .env.production)")
    if s.password == DEV_PASSWORD:
        raise ConfigError(f"production refuses the development password: set {where} to the real secret")


def load_dotenv_file() -> str | None:
    """Read ``.env`` from the working directory upwards into ``os.environ`` without overriding anything set.

    For entry points only (CLIs, scripts); library code never reads files behind the caller's back.
    Returns the path read, or ``None``.
    """
    from dotenv import find_dotenv, load_dotenv

    path = find_dotenv(usecwd=True)
    if path:
        load_dotenv(path, override=False)
        return path
    return None
