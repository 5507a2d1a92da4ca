"""Settings per environment (local, testing, testnet, staging, production), read from the environment.

``load_settings()`` reads ``os.environ`` only; entry points call ``load_dotenv_file()`` first so that a ``.env``
fills in what the environment does not already set (it never overrides). Every refusal is a ``ConfigError`` naming
the variable and the fix, and no string this module produces for people (repr, ``safe_dsn``) contains the password.

How the target is chosen (one rule, for every command and the nodes alike):

1. The environment is ``--env`` / the ``env`` argument, else ``LUMINAR_ENV``, else ``local``; it gives the defaults
   (``luminar_store.config.environments``).
2. The environment's own variables (``LUMINAR_LOCAL_DB_*``, ``LUMINAR_TEST_DB_*``, ``LUMINAR_TESTNET_DB_*``,
   ``LUMINAR_STAGING_DB_*``: HOST, PORT, NAME, USER, PASSWORD, SSLMODE) apply to it alone.
3. The general connection variables (``DATABASE_URL``, which overrides ``LUMINAR_DB_*``; ``LUMINAR_DB_*``,
   ``SSL_MODE``, ``DATABASE_SSL_*``, ``LUMINAR_DB_READ_HOST``, ``LUMINAR_DB_REPLICA_URLS``) apply next; each was
   written for one environment (``luminar_store.config.variables``). One written for another environment never
   chooses the server: a host, port or database name (or a replica) that differs from this environment's is
   refused, naming the variable, where it came from and the fix, so a ``.env`` written for local never redirects
   ``--env testing``. Credentials and TLS options apply (the environment's own variables win over them).
4. Two names for one setting (``LUMINAR_DB_NAME`` and ``LUMINAR_LOCAL_DB_NAME``, ``MAX_OVERFLOW`` and
   ``DB_MAX_OVERFLOW``, ``SSL_MODE`` and ``LUMINAR_DB_SSLMODE`` ...) must agree, or are refused; except that a value
   set in the shell wins over one from ``.env`` (``make db-start LUMINAR_DB_PORT=5434`` with ``.env.local``), and
   ``DB_POOL_SIZE`` wins over ``POOL_SIZE`` (the specification's out-of-memory knob).
5. Pool and retention figures tune the client and apply whatever the environment.
6. Reporters' ids are pseudonymised (``luminar_store.privacy``) when ``LUMINAR_PSEUDONYMIZE`` (``on`` / ``off``)
   says so, by default in testnet, staging and production; production refuses ``off``. The key
   (``LUMINAR_PSEUDONYM_KEY``) is checked when set (too short is refused) and required where reports are written
   with pseudonymisation on (``Settings.pseudonyms``): commands that write no report (migrate, backup) run without it.

Example::

    >>> s = load_settings(environ={"LUMINAR_ENV": "local"})
    >>> s.safe_dsn()
    'postgresql://luminar_dev:***@localhost:5432/luminar_local?sslmode=disable'
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from urllib.parse import quote

from luminar_store.config.environments import DEV_PASSWORD, ENVIRONMENTS, Environment, environment
from luminar_store.config.tls import SSL_MODES, STRONG_SSL_MODES, check_tls_minimum
from luminar_store.config.variables import SCOPED_SUFFIXES, DotenvRecord, Origins, loaded_dotenv, warn_unknown
from luminar_store.errors import ConfigError
from luminar_store.limits import DEFAULT_CLAIM_LEASE_MINUTES, MAX_STALE_MINUTES
from luminar_store.privacy import KEY_VARIABLE, SWITCH_VARIABLE, Pseudonyms, check_key, key_missing
from luminar_store.replicas import DEFAULT_REPLICA_COOLDOWN, DEFAULT_REPLICA_MAX_LAG
from luminar_store.validation import NAIVE_TIMESTAMP_RULES

__all__ = ["SSL_MODES", "DEFAULT_RETENTION_DAYS", "DEFAULT_MAP_TILES_URL", "DEFAULT_MAP_TILES_ATTRIBUTION",
           "Settings", "load_settings"]

log = logging.getLogger("luminar_store.config")

DEFAULT_RETENTION_DAYS = 365
#: The map's base layer when ``LUMINAR_MAP_TILES_URL`` is not set: OpenStreetMap's standard tiles, with the credit
#: their licence asks for.
DEFAULT_MAP_TILES_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
DEFAULT_MAP_TILES_ATTRIBUTION = ('&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> '
                                 "contributors")


@dataclass(frozen=True)
class Settings:
    """Connection, TLS and pool settings in force. ``repr()`` never shows the password or the pseudonym key."""

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
    #: Seconds a replica that refused or timed out is skipped before one read probes it again
    #: (``LUMINAR_DB_REPLICA_COOLDOWN``; ``luminar_store.replicas``).
    replica_cooldown: float = DEFAULT_REPLICA_COOLDOWN
    #: Bytes of WAL a replica may be behind the primary and still serve reads (``LUMINAR_DB_REPLICA_MAX_LAG``).
    replica_max_lag: int = DEFAULT_REPLICA_MAX_LAG
    retention_days: int = DEFAULT_RETENTION_DAYS
    connect_timeout: int = 10
    from_database_url: bool = False
    #: How naive datetimes from the nodes are read: local (the node's local time), utc, or refuse
    #: (``LUMINAR_NAIVE_TIMESTAMPS``; ``luminar_store.validation.NAIVE_TIMESTAMP_RULES``).
    naive_timestamps: str = "local"
    #: Minutes a claim of raw reports holds them (``LUMINAR_CLAIM_LEASE_MINUTES``, 1..``MAX_STALE_MINUTES``): an
    #: older claim is taken back by the next claim, or by ``release_stale_claims()``.
    claim_lease_minutes: int = DEFAULT_CLAIM_LEASE_MINUTES
    #: The role that owns the schema, runs the migrations and the operators' commands (``LUMINAR_DB_OWNER``,
    #: ``LUMINAR_DB_OWNER_PASSWORD``); None when the nodes' login is the owner too. Nodes never use it.
    owner: str | None = None
    owner_password: str = field(default="", repr=False)

    #: Whether the nodes reach the primary through PgBouncer in transaction pooling (``LUMINAR_DB_PGBOUNCER``:
    #: ``on``, ``off``, or unset / ``auto``, None: the pools find out when they open). Behind it no statement is
    #: prepared (PgBouncer before 1.21 does not carry prepared statements across its server connections).
    pgbouncer: bool | None = None
    #: Where the primary itself listens, around the pooler (``LUMINAR_DB_DIRECT_URL``: host, port and TLS only).
    #: The owner's commands (migrations, whose advisory lock needs one server session) connect there.
    direct_url: str | None = field(default=None, repr=False)

    def as_owner(self) -> Settings:
        """The same target, connected as the owner (``owner``): what the operators' commands use; itself when one
        login does both. With ``direct_url`` (``LUMINAR_DB_DIRECT_URL``) it connects there, around PgBouncer."""
        direct = self.direct() if self.direct_url else self
        if not direct.owner:
            return direct
        return replace(direct, user=self.owner, password=self.owner_password, owner=None, owner_password="")

    def direct(self) -> Settings:
        """These settings pointed at the primary's own address (``LUMINAR_DB_DIRECT_URL``), not at the pooler; itself
        without one. Raises ``ConfigError`` when the URL names more than where and how to reach the server."""
        if not self.direct_url:
            return self
        route = _direct_route(self.direct_url)
        return replace(self, direct_url=None, pgbouncer=False, **route)  # type: ignore[arg-type]
    #: Whether reporters' ids are stored pseudonymised (``LUMINAR_PSEUDONYMIZE``; ``luminar_store.privacy``).
    pseudonymize: bool = False
    #: The key of the pseudonyms (``LUMINAR_PSEUDONYM_KEY``): a secret, never shown.
    pseudonym_key: str = field(default="", repr=False)
    #: The base map of ``luminar-db map``: a tile URL template with ``{z}``, ``{x}`` and ``{y}``
    #: (``LUMINAR_MAP_TILES_URL``) and the credit shown under it (``LUMINAR_MAP_TILES_ATTRIBUTION``).
    map_tiles_url: str = DEFAULT_MAP_TILES_URL
    map_tiles_attribution: str = DEFAULT_MAP_TILES_ATTRIBUTION

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

    def target(self, *, dbname: str | None = None) -> str:
        """What a command acts on, in full: ``database luminar_test on localhost:5433 (environment testing)``.
        Destructive commands print it before they act and in their confirmation."""
        return f"database {dbname or self.name} on {self.host}:{self.port} (environment {self.env})"

    @property
    def rules(self) -> Environment:
        """The environment's defaults and what it allows (``environments.environment``)."""
        return environment(self.env)

    @classmethod
    def from_conninfo(cls, conninfo: str, env: str = "local") -> Settings:
        """Settings for one connection string (URL or ``key=value``), as tools that are handed one use it: the
        string's host, port, database, role, password and TLS; nothing else is read. Raises ``ConfigError`` (never
        echoing the string) when it is not a connection string."""
        parts = _from_database_url(conninfo, what="the connection string")
        user = str(parts.get("user") or os.environ.get("PGUSER") or "postgres")
        return cls(env=env, host=str(parts.get("host") or "localhost"),
                   port=_port(parts.get("port") or 5432, "the connection string's port"),
                   name=str(parts.get("name") or user), user=user, password=str(parts.get("password") or ""),
                   sslmode=str(parts.get("sslmode") or "prefer"), sslrootcert=parts.get("sslrootcert"),  # type: ignore
                   sslcert=parts.get("sslcert"), sslkey=parts.get("sslkey"))  # type: ignore[arg-type]

    @property
    def pseudonyms(self) -> Pseudonyms | None:
        """What writes reporters' ids: ``Pseudonyms`` under the key when pseudonymisation is on, ``None`` when
        they are stored as sent. Raises ``ConfigError`` (naming ``LUMINAR_PSEUDONYM_KEY`` and how to make one)
        when it is on without a key."""
        if not self.pseudonymize:
            return None
        if not self.pseudonym_key:
            raise key_missing(self.env)
        return Pseudonyms(self.pseudonym_key)

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
            if f.name in ("password", "owner_password", "pseudonym_key"):
                value = "***" if value else ""
            elif f.name == "replica_urls":
                value = len(value)
            out[f.name] = value
        return out



# -- parsing ------------------------------------------------------------------------------------------------------
def _number(environ: Mapping[str, str], name: str, default: float, *, whole: bool = True, minimum: float = 1,
            maximum: float | None = None) -> float:
    """The number in variable ``name`` (``default`` when unset or empty): a whole number within the bounds, or with
    ``whole=False`` a positive, finite number of seconds. Refusals name the variable and an example."""
    raw = environ.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    kind = "a whole number" if whole else "a number of seconds"
    try:
        value = int(str(raw).strip()) if whole else float(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{name} must be {kind}, got {raw!r}; set it like {name}={default:g}") from None
    if not whole and (not math.isfinite(value) or value <= 0):
        raise ConfigError(f"{name} must be a positive number of seconds, got {raw!r}")
    if whole and (value < minimum or (maximum is not None and value > maximum)):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name} must be {bounds}, got {value}; set it like {name}={default:g}")
    return value


def _int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 1, maximum: int | None = None) -> int:
    return int(_number(environ, name, default, minimum=minimum, maximum=maximum))


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    return _number(environ, name, default, whole=False)


def _port(value: object, name: str) -> int:
    return _int({name: str(value)}, name, 5432, maximum=65535)


def _from_database_url(url: str, *, what: str = "DATABASE_URL") -> dict[str, object]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # psycopg.ProgrammingError: its message may echo the URL, so it is not chained
        raise ConfigError(
            f"{what} is not a valid connection string; use postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        ) from None
    # A password holding an unescaped '@', '/' or '?' shifts the URL's parts: part of it lands in the host, the port or
    # the database name, which messages print. No host, port or database name holds an '@', and ports are digits.
    port = str(parts.get("port") or "")
    if ("@" in str(parts.get("host") or "") or "@" in str(parts.get("dbname") or "")
            or port.replace(",", "").strip() and not port.replace(",", "").isdigit()):
        raise ConfigError(
            f"{what} cannot be read: its user or password holds a character that URLs reserve ('@', '/', ':', '?' "
            "or '#'); percent-encode it (@ as %40, / as %2F, : as %3A, ? as %3F, # as %23), or give the password "
            "in LUMINAR_DB_PASSWORD instead"
        )
    out: dict[str, object] = {}
    mapping = {"host": "host", "port": "port", "dbname": "name", "user": "user", "password": "password",
               "sslmode": "sslmode", "sslrootcert": "sslrootcert", "sslcert": "sslcert", "sslkey": "sslkey"}
    for key, target in mapping.items():
        if parts.get(key) not in (None, ""):
            out[target] = parts[key]
    return out


# General connection variables: field -> the names that set it, in order of precedence (first wins). DATABASE_URL
# is read separately and overrides them all.
_GENERAL_FIELDS = {
    "host": ("LUMINAR_DB_HOST",),
    "port": ("LUMINAR_DB_PORT",),
    "name": ("LUMINAR_DB_NAME",),
    "user": ("LUMINAR_DB_USER",),
    "password": ("LUMINAR_DB_PASSWORD",),
    "sslmode": ("LUMINAR_DB_SSLMODE", "SSL_MODE"),
    "sslrootcert": ("LUMINAR_DB_SSLROOTCERT", "DATABASE_SSL_ROOT_CERT"),
    "sslcert": ("LUMINAR_DB_SSLCERT", "DATABASE_SSL_CERT"),
    "sslkey": ("LUMINAR_DB_SSLKEY", "DATABASE_SSL_KEY"),
}
# What chooses the server and database: a value written for another environment must agree with this one's.
_TARGET_FIELDS = ("host", "port", "name")
# Pool figures: (field, names that must agree, parser arguments). DB_POOL_SIZE is handled apart (it wins).
_POOL_ALIASES = (("max_overflow", ("MAX_OVERFLOW", "DB_MAX_OVERFLOW")),
                 ("pool_timeout", ("POOL_TIMEOUT", "DB_POOL_TIMEOUT")),
                 ("pool_recycle", ("POOL_RECYCLE", "DB_POOL_RECYCLE")))


def _clean(field_name: str, value: object) -> object:
    return str(value).strip().lower() if field_name == "sslmode" else value


def _given(environ: Mapping[str, str], name: str, field_name: str) -> bool:
    """A variable counts when set and not empty; a password set empty counts too (an empty password)."""
    return name in environ and (environ[name] != "" or field_name == "password")


def _must_agree(field_name: str, first: tuple[str, object], second: tuple[str, object]) -> None:
    """Refuse two variables that set one setting to different values (a password's values are never shown)."""
    if _clean(field_name, first[1]) != _clean(field_name, second[1]):
        shown = "" if field_name == "password" else f" ({first[1]!r} and {second[1]!r})"
        raise ConfigError(f"{first[0]} and {second[0]} both set {field_name} differently{shown}; keep one of them")


def _agreeing(environ: Mapping[str, str], names: tuple[str, ...], field_name: str) -> tuple[str, str] | None:
    """The (name, value) that sets a field among names that mean the same; refused when two set values differ."""
    found = [(n, environ[n]) for n in names if _given(environ, n, field_name)]
    for other in found[1:]:
        _must_agree(field_name, found[0], other)
    return found[0] if found else None


class _Resolver:
    """Applies the module's rule to one environment (see the module text)."""

    def __init__(self, env: Environment, origins: Origins) -> None:
        self.env, self.origins, self.environ = env, origins, origins.environ
        #: The variable that set sslmode (None: the environment's default), known after ``connection()``.
        self.sslmode_from: str | None = None

    def connection(self) -> tuple[dict[str, object], bool]:
        env = self.env
        values: dict[str, object] = {"host": env.host, "port": env.port, "name": env.database, "user": env.user,
                                     "password": env.password, "sslmode": env.sslmode, "sslrootcert": None,
                                     "sslcert": None, "sslkey": None}
        own: dict[str, str] = {}  # field -> variable name, for this environment's own variables
        for suffix, field_name in SCOPED_SUFFIXES.items():
            name = f"{env.prefix}{suffix}" if env.prefix else None
            if name and _given(self.environ, name, field_name):
                values[field_name] = self.environ[name]
                own[field_name] = name
        foreign: dict[str, tuple[str, object]] = {}  # target fields written for another environment
        applied: dict[str, str] = {}  # field -> general variable that set it
        for field_name, (name, value) in self._general().items():
            elsewhere = self.origins.written_for(name) != env.name
            if field_name in own:
                if not elsewhere:
                    mine, from_file = own[field_name], self.origins.from_dotenv
                    if from_file(mine) and not from_file(name):  # the shell wins over .env, as for any name
                        values[field_name], own[field_name] = value, name
                    elif from_file(mine) == from_file(name):
                        _must_agree(field_name, (mine, values[field_name]), (name, value))
                continue  # the environment's own variable wins over one written for another environment
            if elsewhere and field_name in _TARGET_FIELDS:
                foreign[field_name] = (name, value)
                continue
            values[field_name] = value
            applied[field_name] = name
        values["port"] = _port(values["port"], own.get("port") or applied.get("port", "LUMINAR_DB_PORT"))
        values["sslmode"] = str(values["sslmode"]).strip().lower()
        self.sslmode_from = own.get("sslmode") or applied.get("sslmode")
        for field_name, (name, value) in foreign.items():
            theirs = _port(value, name) if field_name == "port" else value
            if theirs != values[field_name]:
                self._refuse_foreign(name, field_name, value)
        url = self.environ.get("DATABASE_URL")
        return values, bool(url) and self.origins.written_for("DATABASE_URL") == env.name

    def _general(self) -> dict[str, tuple[str, object]]:
        """field -> (variable, value) from the general variables; DATABASE_URL overrides LUMINAR_DB_*."""
        out: dict[str, tuple[str, object]] = {}
        for field_name, names in _GENERAL_FIELDS.items():
            found = _agreeing(self.environ, names, field_name)
            if found is not None:
                out[field_name] = found
        if self.environ.get("DATABASE_URL"):
            for field_name, value in _from_database_url(self.environ["DATABASE_URL"]).items():
                out[field_name] = ("DATABASE_URL", value)
        return out

    def _refuse_foreign(self, name: str, field_name: str, value: object) -> None:
        env = self.env
        shown = "" if field_name == "password" or name == "DATABASE_URL" else f"={value}"
        suffix = next((s for s, f in SCOPED_SUFFIXES.items() if f == field_name), None)
        own = f"set {env.prefix}{suffix} for {env.name}, or " if env.prefix and suffix else ""
        raise ConfigError(
            f"{name}{shown} ({self.origins.where(name)}) is written for LUMINAR_ENV={self.origins.written_for(name)} "
            f"and would point this {env.name} command elsewhere; nothing was done. To use {env.name}: {own}run with "
            f"LUMINAR_ENV={env.name} and its own settings, or unset {name}")

    def replicas(self) -> tuple[str, ...]:
        urls = [u.strip() for u in self.environ.get("LUMINAR_DB_REPLICA_URLS", "").split(",") if u.strip()]
        read_host = (self.environ.get("LUMINAR_DB_READ_HOST") or "").strip()
        for name, present in (("LUMINAR_DB_REPLICA_URLS", urls), ("LUMINAR_DB_READ_HOST", read_host)):
            if present and self.origins.written_for(name) != self.env.name:
                self._refuse_foreign(name, "replicas", "")
        return tuple(urls), read_host


def load_settings(env: str | None = None, environ: Mapping[str, str] | None = None, *,
                  dotenv: DotenvRecord | None = None) -> Settings:
    """Build the settings for ``env`` (default: ``LUMINAR_ENV``, else ``local``) from ``environ`` (default
    ``os.environ``, with the ``.env`` record of ``load_dotenv_file``), by the rule of the module text.

    Raises ``ConfigError`` for an unknown environment, a malformed number, a variable written for another
    environment that would redirect this one, two names of one setting that disagree, a weak sslmode or a
    missing or development password in production. Unknown ``LUMINAR_*`` / ``DB_*`` names are logged as warnings.
    """
    if environ is None:
        environ = os.environ
        dotenv = dotenv or loaded_dotenv()
    origins = Origins(environ, dotenv)
    for name, value in (("LUMINAR_ENV", origins.luminar_env), ("--env", (env or "").strip().lower() or None)):
        if value is not None and value not in ENVIRONMENTS:
            raise ConfigError(f"{name} must be one of {', '.join(ENVIRONMENTS)}, got {value!r}")
    rules = environment((env or "").strip().lower() or origins.luminar_env or "local")
    warn_unknown(environ)
    resolver = _Resolver(rules, origins)
    values, from_url = resolver.connection()
    if values["sslmode"] not in SSL_MODES:
        raise ConfigError(f"LUMINAR_DB_SSLMODE must be one of {', '.join(SSL_MODES)}, got {values['sslmode']!r}")
    if rules.production and values["sslrootcert"] and resolver.sslmode_from is None:
        values["sslmode"] = "verify-full"  # a root certificate is there: authenticate the server by name too
    replica_urls, read_host = resolver.replicas()
    if read_host:  # the network's LUMINAR_DB_READ_HOST: a replica of the same database on another host
        from psycopg.conninfo import make_conninfo

        parts = {k: str(v) for k, v in values.items() if v is not None and k != "name"}
        parts = {("dbname" if k == "name" else k): v for k, v in parts.items()}
        replica_urls += (make_conninfo(**{**parts, "host": read_host, "dbname": str(values["name"])}),)

    pool_size = _int(environ, "POOL_SIZE", rules.pool_size)
    # DB_POOL_SIZE is the specification's out-of-memory knob: it wins over POOL_SIZE.
    pool_size = _int(environ, "DB_POOL_SIZE", pool_size)
    pool: dict[str, object] = {}
    for field_name, names in _POOL_ALIASES:
        found = _agreeing(environ, names, field_name)
        name = found[0] if found else names[0]
        default = getattr(rules, field_name)
        pool[field_name] = (_int(environ, name, default, minimum=0) if field_name == "max_overflow"
                            else _seconds(environ, name, default))

    settings = Settings(
        env=rules.name,
        pool_size=pool_size,
        replica_urls=replica_urls,
        replica_cooldown=_seconds(environ, "LUMINAR_DB_REPLICA_COOLDOWN", DEFAULT_REPLICA_COOLDOWN),
        replica_max_lag=_int(environ, "LUMINAR_DB_REPLICA_MAX_LAG", DEFAULT_REPLICA_MAX_LAG, minimum=0),
        retention_days=_int(environ, "LUMINAR_RETENTION_DAYS", DEFAULT_RETENTION_DAYS),
        connect_timeout=_int(environ, "LUMINAR_DB_CONNECT_TIMEOUT", 10),
        from_database_url=from_url,
        naive_timestamps=_naive_rule(environ),
        pseudonymize=_pseudonymize(environ, rules),
        pseudonym_key=_pseudonym_key(environ),
        claim_lease_minutes=_int(environ, "LUMINAR_CLAIM_LEASE_MINUTES", DEFAULT_CLAIM_LEASE_MINUTES,
                                 maximum=MAX_STALE_MINUTES),
        pgbouncer=_pgbouncer(environ),
        direct_url=_direct_url(environ),
        **_map_tiles(environ),
        **_owner(environ, rules, str(values["user"])),
        **pool,  # type: ignore[arg-type]
        **values,  # type: ignore[arg-type]
    )
    _check_production(settings, resolver.sslmode_from)
    return _checked_replicas(settings, replica_urls, read_host)


def _checked_replicas(settings: Settings, urls: tuple[str, ...], read_host: str) -> Settings:
    """``settings`` with every replica URL meeting the primary's TLS minimum (``config.tls.check_tls_minimum``);
    the last URL is ``LUMINAR_DB_READ_HOST``'s when that is set."""
    checked = []
    listed = len(urls) - (1 if read_host else 0)
    for index, url in enumerate(urls):
        if index < listed:
            checked.append(check_tls_minimum(url, settings, "LUMINAR_DB_REPLICA_URLS", entry=index + 1))
        else:
            checked.append(check_tls_minimum(url, settings, "LUMINAR_DB_READ_HOST"))
    return replace(settings, replica_urls=tuple(checked))


def _owner(environ: Mapping[str, str], rules: Environment, user: str) -> dict[str, object]:
    """``owner`` and ``owner_password``: ``LUMINAR_DB_OWNER``, else the environment's owner when the nodes' login
    is the environment's own (a login chosen by hand says nothing of an owner: it is its own); and
    ``LUMINAR_DB_OWNER_PASSWORD``, else, for the environment's own owner, its development password. An owner that
    is the nodes' login itself is no separate owner."""
    owner = (environ.get("LUMINAR_DB_OWNER") or "").strip() or (rules.owner if user == rules.user else None)
    if not owner or owner == user:
        return {}
    password = environ.get("LUMINAR_DB_OWNER_PASSWORD")
    if password is None and owner == rules.owner:
        password = rules.password
    return {"owner": owner, "owner_password": password or ""}


_DIRECT_KEYS = {"host": "host", "port": "port", "sslmode": "sslmode", "sslrootcert": "sslrootcert"}


def _direct_route(url: str) -> dict[str, object]:
    """host, port (and TLS) of ``LUMINAR_DB_DIRECT_URL``; the login and the database stay the settings' own."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # psycopg.ProgrammingError: its message may echo the URL
        raise ConfigError("LUMINAR_DB_DIRECT_URL is not a valid connection string; use postgresql://HOST:PORT "
                          "(the primary's own address, around PgBouncer)") from None
    extra = sorted(k for k, v in parts.items() if k not in _DIRECT_KEYS and v not in (None, ""))
    if extra or not parts.get("host"):
        raise ConfigError("LUMINAR_DB_DIRECT_URL names where the primary listens and nothing else: give "
                          "postgresql://HOST:PORT (optionally ?sslmode=...&sslrootcert=...); the login is "
                          "LUMINAR_DB_OWNER's and the database LUMINAR_DB_NAME's")
    route: dict[str, object] = {f: parts[k] for k, f in _DIRECT_KEYS.items() if parts.get(k) not in (None, "")}
    route["port"] = _port(route.get("port", 5432), "LUMINAR_DB_DIRECT_URL's port")
    if "sslmode" in route and route["sslmode"] not in SSL_MODES:
        raise ConfigError(f"LUMINAR_DB_DIRECT_URL's sslmode must be one of {', '.join(SSL_MODES)}")
    return route


def _direct_url(environ: Mapping[str, str]) -> str | None:
    raw = (environ.get("LUMINAR_DB_DIRECT_URL") or "").strip()
    if raw:
        _direct_route(raw)  # refused now rather than at the first operator's command
    return raw or None


def _pgbouncer(environ: Mapping[str, str]) -> bool | None:
    raw = (environ.get("LUMINAR_DB_PGBOUNCER") or "auto").strip().lower()
    if raw not in ("on", "off", "auto"):
        raise ConfigError(f"LUMINAR_DB_PGBOUNCER must be on, off or auto, got {raw!r:.20}; set "
                          "LUMINAR_DB_PGBOUNCER=on when the nodes connect through PgBouncer")
    return None if raw == "auto" else raw == "on"


def _map_tiles(environ: Mapping[str, str]) -> dict[str, str]:
    url = (environ.get("LUMINAR_MAP_TILES_URL") or "").strip()
    attribution = (environ.get("LUMINAR_MAP_TILES_ATTRIBUTION") or "").strip()
    if not url:
        return {"map_tiles_url": DEFAULT_MAP_TILES_URL,
                "map_tiles_attribution": attribution or DEFAULT_MAP_TILES_ATTRIBUTION}
    if not url.startswith(("https://", "http://")) or not all(k in url for k in ("{z}", "{x}", "{y}")):
        raise ConfigError(f"LUMINAR_MAP_TILES_URL must be an http(s) URL template with {{z}}, {{x}} and {{y}}, got "
                          f"{url!r:.80}; e.g. LUMINAR_MAP_TILES_URL={DEFAULT_MAP_TILES_URL}")
    if not attribution and url != DEFAULT_MAP_TILES_URL:
        raise ConfigError("LUMINAR_MAP_TILES_ATTRIBUTION is missing: a map on LUMINAR_MAP_TILES_URL's tiles must "
                          "credit their source (their terms ask for it); set it to the credit line the tile server "
                          "gives")
    return {"map_tiles_url": url, "map_tiles_attribution": attribution or DEFAULT_MAP_TILES_ATTRIBUTION}


def _naive_rule(environ: Mapping[str, str]) -> str:
    rule = (environ.get("LUMINAR_NAIVE_TIMESTAMPS") or "local").strip().lower()
    if rule not in NAIVE_TIMESTAMP_RULES:
        raise ConfigError(f"LUMINAR_NAIVE_TIMESTAMPS must be one of {', '.join(NAIVE_TIMESTAMP_RULES)}, "
                          f"got {rule!r}")
    return rule


def _check_production(s: Settings, sslmode_from: str | None) -> None:
    """Production's TLS and password rules: below ``require`` is refused; ``require`` and ``verify-ca`` are accepted
    with a warning (they do not authenticate the server's name), ``verify-full`` silently."""
def _pseudonymize(environ: Mapping[str, str], rules: Environment) -> bool:
    raw = (environ.get(SWITCH_VARIABLE) or "").strip().lower()
    if not raw:
        return rules.pseudonymize
    if raw not in ("on", "off"):
        raise ConfigError(f"{SWITCH_VARIABLE} must be on or off, got {raw!r:.20}")
    if raw == "off" and rules.production:
        raise ConfigError(f"production refuses {SWITCH_VARIABLE}=off: reporters' ids are stored pseudonymised "
                          f"there; unset it and set {KEY_VARIABLE}")
    return raw == "on"


def _pseudonym_key(environ: Mapping[str, str]) -> str:
    """The key when set (checked: too short is refused), else empty."""
    raw = environ.get(KEY_VARIABLE) or ""
    if not raw.strip():
        return ""
    check_key(raw)
    return raw.strip()


def _check_production(s: Settings, sslmode_from: str | None) -> None:
    """Production's TLS and password rules: below ``require`` is refused; ``require`` and ``verify-ca`` are accepted
    with a warning (they do not authenticate the server's name), ``verify-full`` silently."""
    if not s.rules.production:
        return
    where = sslmode_from or ("DATABASE_URL" if s.from_database_url else "LUMINAR_DB_SSLMODE")
    if s.sslmode not in STRONG_SSL_MODES:
        raise ConfigError(
            f"production requires TLS: {where} gives sslmode={s.sslmode}; set LUMINAR_DB_SSLMODE=verify-full with "
            "LUMINAR_DB_SSLROOTCERT (or require / verify-ca, which do not authenticate the server)"
        )
    if s.sslmode != "verify-full":
        given = f"{where} gives sslmode={s.sslmode}" if sslmode_from else f"sslmode is {s.sslmode} by default"
        log.warning("production: %s, which encrypts but does not authenticate the server (%s): a server with a "
                    "certificate of another host is accepted; set LUMINAR_DB_SSLROOTCERT to the CA's certificate and "
                    "LUMINAR_DB_SSLMODE=verify-full", given,
                    "any certificate is accepted" if s.sslmode == "require" and not s.sslrootcert
                    else "its name is not checked")
    where = "DATABASE_URL" if s.from_database_url else "LUMINAR_DB_PASSWORD"
    if not s.password:
        raise ConfigError(f"production requires a password: set {where} (see .env.production)")
    if s.password == DEV_PASSWORD:
        raise ConfigError(f"production refuses the development password: set {where} to the real secret")
    if s.owner and s.owner_password in ("", DEV_PASSWORD):
        raise ConfigError(f"production requires the owner's own password: set LUMINAR_DB_OWNER_PASSWORD for "
                          f"LUMINAR_DB_OWNER={s.owner}")
