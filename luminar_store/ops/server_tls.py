"""Prepare a PostgreSQL server for production: TLS on, client certificates, an address allow-list, pgAudit.

``plan_server`` checks everything first (the data directory, the certificate files, the allow-list, the method)
and says which files it will change; ``apply_plan`` then writes them (``<config>`` is the directory of
``postgresql.conf``: the data directory, or ``/etc/postgresql/<major>/main`` on Debian):

* the server's certificate, key and CA certificate, copied into ``<config>/luminar_tls/`` and given to the data
  directory's owner (the key 0600: the server refuses a key others can read);
* ``<config>/conf.d/luminar_security.conf`` (``postgresql.conf`` gains ``include_dir = 'conf.d'`` once): ``ssl = on``,
  the three files, ``ssl_min_protocol_version = 'TLSv1.2'``, ``password_encryption = 'scram-sha-256'``, and pgAudit
  (``shared_preload_libraries``, ``pgaudit.log = 'ddl, role'``) when its library is installed for the server's major
  version (Debian's ``postgresql-<major>-pgaudit``), else a comment saying it was skipped;
* ``<config>/pg_hba.conf`` from ``init-scripts/pg_hba.production.conf.template``, the old file kept beside it as
  ``pg_hba.conf.luminar-backup-<UTC time>``.

With an administrator's connection the new files are checked by the server itself (``pg_hba_file_rules`` and
``pg_file_settings`` read the files on disk) before it reloads them (``pg_reload_conf()``); a file the server finds
wrong is put back and the command fails naming the line. Without one, ``pg_ctl reload`` is run as the data
directory's owner. TLS and ``pg_hba.conf`` take effect on reload; pgAudit (``shared_preload_libraries``) on the next
restart.

Authentication method (``method``): ``scram-sha-256`` (default) asks for the role's password *and* a client
certificate whose CN is the login (``clientcert=verify-full``), so a stolen key alone, or a password alone, is not
enough; ``cert`` asks for the certificate only.

Example::

    >>> plan = plan_server(Path("/var/lib/postgresql/15/main"), cert=Path("server.crt"), key=Path("server.key"),
    ...                    ca=Path("ca.crt"), allowed_cidrs="10.0.0.0/24")
    >>> apply_plan(plan).reload
    'reloaded with pg_ctl'
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from string import Template

from luminar_store.errors import ConfigError, OperationError
from luminar_store.ops.certs import check_pair

__all__ = ["HBA_METHODS", "ALLOWED_CIDRS_VARIABLE", "TEMPLATE_NAME", "ServerPlan", "ServerReport", "parse_cidrs",
           "pgaudit_library", "plan_server", "apply_plan", "prepare_server", "default_template"]

HBA_METHODS = ("scram-sha-256", "cert")
ALLOWED_CIDRS_VARIABLE = "LUMINAR_ALLOWED_CIDRS"
TEMPLATE_NAME = "pg_hba.production.conf.template"
SECURITY_CONF = "luminar_security.conf"
TLS_DIR = "luminar_tls"
_ROLE_RE = re.compile(r"[a-z_][a-z0-9_$]{0,62}")
_INCLUDE_RE = re.compile(r"^\s*include_dir\s*=?\s*'conf\.d'", re.MULTILINE)
_PRELOAD_RE = re.compile(r"^\s*shared_preload_libraries\s*=\s*'([^']*)'", re.MULTILINE)


def default_template() -> Path:
    """The packaged ``pg_hba.production.conf.template`` (``luminar_store.init_scripts``), else the one of the
    project's ``init-scripts/`` beside the package (a checkout)."""
    try:
        packaged = Path(str(resources.files("luminar_store.init_scripts") / TEMPLATE_NAME))
        if packaged.is_file():
            return packaged
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "init-scripts" / TEMPLATE_NAME


def parse_cidrs(value: str | Sequence[str], variable: str = ALLOWED_CIDRS_VARIABLE) -> tuple[str, ...]:
    """The networks of an allow-list (``"10.0.0.0/24, 192.168.5.7"``: commas or spaces), normalised; a bare
    address becomes a one-address network (``/32``, ``/128``).

    Raises ``ConfigError`` naming ``variable`` and the value for an empty list, something that is not a network,
    or a network with host bits set (``10.0.0.5/24``: did you mean ``10.0.0.0/24``?).
    """
    items = [v for v in re.split(r"[,\s]+", value) if v] if isinstance(value, str) else \
        [v.strip() for v in value if v.strip()]
    if not items:
        raise ConfigError(f"{variable} is empty: no address could connect; set it to the nodes' networks, e.g. "
                          f"{variable}=10.0.0.0/24,192.168.5.7/32")
    out: list[str] = []
    for item in items:
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{variable} holds {item!r}, which is not an address or network; write networks "
                              f"like 10.0.0.0/24 or 192.168.5.7/32") from None
        try:
            ipaddress.ip_network(item, strict=True)
        except ValueError:
            raise ConfigError(f"{variable} holds {item!r}, whose address has bits beyond the /{network.prefixlen} "
                              f"prefix; did you mean {network.with_prefixlen}?") from None
        if network.with_prefixlen not in out:
            out.append(network.with_prefixlen)
    return tuple(out)


def pgaudit_library(data_dir: Path) -> tuple[Path | None, str]:
    """Where pgAudit's library is for the server of ``data_dir`` (its major version, from ``PG_VERSION``): the path
    of ``pgaudit.so``, or None, and the library directory looked in (for messages). Never raises."""
    try:
        major = (Path(data_dir) / "PG_VERSION").read_text().strip()
    except OSError:
        major = ""
    candidates = [Path(f"/usr/lib/postgresql/{major}/lib")] if major else []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            done = subprocess.run([pg_config, "--pkglibdir"], capture_output=True, text=True, timeout=30,
                                  check=False)
            if done.returncode == 0 and done.stdout.strip():
                candidates.append(Path(done.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    for libdir in candidates:
        if (libdir / "pgaudit.so").is_file():
            return libdir / "pgaudit.so", str(libdir)
    return None, str(candidates[0]) if candidates else "the server's library directory"


@dataclass(frozen=True)
class ServerPlan:
    """What ``apply_plan`` will do, every input already checked. ``changes`` lists the files it writes."""

    data_dir: Path
    #: Where postgresql.conf and pg_hba.conf live: the data directory, or /etc/postgresql/<major>/<name> on Debian.
    config_dir: Path
    cert: Path
    key: Path
    ca: Path
    cidrs: tuple[str, ...]
    method: str
    admin_role: str
    template: Path
    pgaudit: Path | None
    libdir: str

    @property
    def tls_dir(self) -> Path:
        return self.config_dir / TLS_DIR

    @property
    def hba_file(self) -> Path:
        return self.config_dir / "pg_hba.conf"

    @property
    def security_conf(self) -> Path:
        return self.config_dir / "conf.d" / SECURITY_CONF

    @property
    def changes(self) -> list[Path]:
        """The files written, in the order they are written."""
        return [self.tls_dir / "server.crt", self.tls_dir / "server.key", self.tls_dir / "ca.crt",
                self.config_dir / "postgresql.conf", self.security_conf, self.hba_file]

    def hba_text(self, backup_name: str = "pg_hba.conf.luminar-backup-<time>") -> str:
        """The new ``pg_hba.conf``."""
        method = "scram-sha-256 clientcert=verify-full" if self.method == "scram-sha-256" else "cert"
        allowed = "\n".join(f"hostssl    all       all           {cidr:<19} {method}" for cidr in self.cidrs)
        note = ("the role's password and the certificate" if self.method == "scram-sha-256"
                else "the certificate alone")
        return Template(self.template.read_text()).substitute(
            admin_role=f"{self.admin_role:<13}", allowed=allowed, method_note=note, backup_name=backup_name)

    def security_conf_text(self, preload: str = "") -> str:
        """The new ``conf.d/luminar_security.conf``; ``preload`` is the ``shared_preload_libraries`` already set."""
        def q(value: object) -> str:
            return "'" + str(value).replace("'", "''") + "'"

        lines = [
            "# Written by `luminar-db tls prepare-server`: TLS and password settings of a production server.",
            "# Run the command again rather than editing this file.",
            "ssl = on",
            f"ssl_cert_file = {q(self.tls_dir / 'server.crt')}",
            f"ssl_key_file = {q(self.tls_dir / 'server.key')}",
            f"ssl_ca_file = {q(self.tls_dir / 'ca.crt')}",
            "ssl_min_protocol_version = 'TLSv1.2'",
            "password_encryption = 'scram-sha-256'",
        ]
        if self.pgaudit is not None:
            libraries = [lib.strip() for lib in preload.split(",") if lib.strip() and lib.strip() != "pgaudit"]
            lines += ["# pgAudit: session logging of DDL and role changes (shared_preload_libraries: needs a restart)",
                      f"shared_preload_libraries = {q(', '.join([*libraries, 'pgaudit']))}",
                      "pgaudit.log = 'ddl, role'"]
        else:
            lines += [f"# pgAudit skipped: no pgaudit.so in {self.libdir}; install postgresql-<major>-pgaudit and run "
                      "the command again"]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ServerReport:
    """What ``apply_plan`` did: the backup of the old ``pg_hba.conf``, pgAudit's state and how the server took it."""

    backup: Path
    pgaudit: str
    reload: str


def plan_server(data_dir: Path, *, cert: Path, key: Path, ca: Path, allowed_cidrs: str | Sequence[str],
                config_dir: Path | None = None,
                method: str = "scram-sha-256", admin_role: str = "postgres",
                template: Path | None = None) -> ServerPlan:
    """Check every input of a server's preparation and return the plan; nothing is written.

    ``config_dir`` is where ``postgresql.conf`` and ``pg_hba.conf`` live when not in the data directory (Debian:
    ``/etc/postgresql/<major>/main``); the new files go there.

    Raises ``ConfigError`` naming the input and the fix: a data directory without ``PG_VERSION``, a configuration
    directory without ``postgresql.conf``, a certificate, key or CA file missing or unreadable as one
    (``certs.check_pair``: the key must be the certificate's, without a passphrase), an allow-list that is empty or
    holds a bad network
    (``LUMINAR_ALLOWED_CIDRS``), an unknown method, a bad administrator role, a template missing or without its
    placeholders.
    """
    data_dir = Path(data_dir).absolute()
    if not (data_dir / "PG_VERSION").is_file():
        raise ConfigError(f"{data_dir} is not a PostgreSQL data directory (no PG_VERSION); give the server's data "
                          "directory (SHOW data_directory)")
    config_dir = Path(config_dir).absolute() if config_dir else data_dir
    if not (config_dir / "postgresql.conf").is_file():
        raise ConfigError(f"{config_dir} holds no postgresql.conf; give the directory of the server's configuration "
                          "with --config-dir (SHOW config_file; on Debian /etc/postgresql/<major>/main)")
    for what, path in (("the server certificate", cert), ("the server key", key), ("the CA certificate", ca)):
        if not Path(path).is_file():
            raise ConfigError(f"{what} {path} does not exist; issue it with `luminar-db tls ca` / `tls server-cert`")
    check_pair(Path(cert), Path(key), Path(ca))
    if method not in HBA_METHODS:
        raise ConfigError(f"the method must be one of {', '.join(HBA_METHODS)}, got {method!r}")
    if not _ROLE_RE.fullmatch(admin_role or ""):
        raise ConfigError(f"the administrator role must be a plain role name (as postgres), got {admin_role!r}")
    template = Path(template) if template else default_template()
    if not template.is_file():
        raise ConfigError(f"the pg_hba.conf template {template} does not exist; give --hba-template")
    if "$allowed" not in template.read_text():
        raise ConfigError(f"the pg_hba.conf template {template} has no $allowed line (where the allow-list goes)")
    library, libdir = pgaudit_library(data_dir)
    plan = ServerPlan(data_dir=data_dir, config_dir=config_dir, cert=Path(cert).absolute(), key=Path(key).absolute(),
                      ca=Path(ca).absolute(), cidrs=parse_cidrs(allowed_cidrs), method=method,
                      admin_role=admin_role, template=template, pgaudit=library, libdir=libdir)
    try:
        plan.hba_text()
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"the pg_hba.conf template {template} has a placeholder it cannot fill ({exc}); the known "
                          "ones are $admin_role, $allowed, $method_note and $backup_name (write $$ for a $)") from None
    return plan


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def _give(path: Path, owner: tuple[int, int], mode: int) -> None:
    """``path`` to the data directory's owner, with ``mode``; raises ``OperationError`` when this user may not."""
    try:
        if _owner(path) != owner:
            os.chown(path, *owner)
        path.chmod(mode)
    except PermissionError:
        raise OperationError(f"cannot give {path} to the data directory's owner (uid {owner[0]}); run as that user "
                             "or as root") from None


def _write(path: Path, text: str, owner: tuple[int, int], mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.luminar-new")
    tmp.write_text(text)
    _give(tmp, owner, mode)
    os.replace(tmp, path)


def apply_plan(plan: ServerPlan, *, admin_conninfo: str | None = None, reload: bool = True) -> ServerReport:
    """Write the files of ``plan`` (see the module text) and have the server take them.

    With ``admin_conninfo`` (a superuser's connection string) the server checks the files first (then reloads them
    when ``reload``): if it finds an error, both files are put back and ``OperationError`` names the file, line and
    error. Without it, and with
    ``reload``, ``pg_ctl reload`` runs as the data directory's owner (a server that is not running takes the files
    at its next start). Raises ``OperationError`` when a file cannot be written or given to that owner, or the
    server cannot be reached with ``admin_conninfo`` (the files stay written, not reloaded).
    """
    owner = _owner(plan.data_dir)
    plan.tls_dir.mkdir(mode=0o700, exist_ok=True)
    _give(plan.tls_dir, owner, 0o700)
    for source, name, mode in ((plan.cert, "server.crt", 0o644), (plan.key, "server.key", 0o600),
                               (plan.ca, "ca.crt", 0o644)):
        _write(plan.tls_dir / name, source.read_text(), owner, mode)
    conf = plan.config_dir / "postgresql.conf"
    text = conf.read_text()
    if not _INCLUDE_RE.search(text):
        with conf.open("a") as f:
            f.write("\n# TLS and security settings of luminar_store (luminar-db tls prepare-server).\n"
                    "include_dir = 'conf.d'\n")
    preload = _PRELOAD_RE.findall(text)
    (plan.config_dir / "conf.d").mkdir(mode=0o700, exist_ok=True)
    _give(plan.config_dir / "conf.d", owner, 0o700)
    previous = plan.security_conf.read_text() if plan.security_conf.exists() else None
    _write(plan.security_conf, plan.security_conf_text(preload[-1] if preload else ""), owner)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    backup = plan.hba_file.with_name(f"pg_hba.conf.luminar-backup-{stamp}")
    if plan.hba_file.exists():
        shutil.copy2(plan.hba_file, backup)
    else:
        backup.write_text("")
    _give(backup, owner, 0o600)
    _write(plan.hba_file, plan.hba_text(backup.name), owner)
    audit = (f"enabled ({plan.pgaudit}); takes effect at the next restart" if plan.pgaudit
             else f"skipped: no pgaudit.so in {plan.libdir}")
    if admin_conninfo:
        def put_back() -> None:
            shutil.copy2(backup, plan.hba_file)
            if previous is None:
                plan.security_conf.unlink(missing_ok=True)
            else:
                _write(plan.security_conf, previous, owner)

        how = _check_and_reload(admin_conninfo, put_back, reload=reload)
    elif reload:
        how = _pg_ctl_reload(plan.data_dir, owner)
    else:
        how = "not reloaded (reload the server, or restart it, to apply)"
    return ServerReport(backup=backup, pgaudit=audit, reload=how)


def prepare_server(data_dir: Path, *, admin_conninfo: str | None = None, reload: bool = True,
                   **options: object) -> ServerReport:
    """``plan_server(data_dir, **options)`` then ``apply_plan``; raises as they do."""
    return apply_plan(plan_server(data_dir, **options), admin_conninfo=admin_conninfo,  # type: ignore[arg-type]
                      reload=reload)


# Both views read the files on disk (not what the server has loaded), so they judge the new files before a reload.
HBA_ERRORS = "SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL ORDER BY line_number"
CONF_ERRORS = ("SELECT sourcefile, sourceline, coalesce(name, ''), error FROM pg_file_settings "
               "WHERE error IS NOT NULL ORDER BY seqno")


def _check_and_reload(admin_conninfo: str, put_back: Callable[[], None], *, reload: bool) -> str:
    import psycopg

    try:
        with psycopg.connect(admin_conninfo, autocommit=True, connect_timeout=10) as conn:
            wrong = [f"pg_hba.conf line {n}: {e}" for n, e in conn.execute(HBA_ERRORS).fetchall()]
            wrong += [f"{f} line {n} ({name}): {e}" for f, n, name, e in conn.execute(CONF_ERRORS).fetchall()]
            if wrong:
                put_back()
                raise OperationError(f"the server finds the new settings wrong, so pg_hba.conf and {SECURITY_CONF} "
                                     f"were put back and nothing reloaded: {wrong[0]}")
            if reload:
                conn.execute("SELECT pg_reload_conf()")
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OperationError(f"could not check the new files with the administrator's connection (--admin-url): "
                             f"{first}; the files are written but not reloaded") from None
    return "checked by the server and reloaded" if reload else "checked by the server, not reloaded"


def _pg_ctl_reload(data_dir: Path, owner: tuple[int, int]) -> str:
    major = (data_dir / "PG_VERSION").read_text().strip()
    pg_ctl = Path(f"/usr/lib/postgresql/{major}/bin/pg_ctl")
    if not pg_ctl.exists():
        found = shutil.which("pg_ctl")
        if found is None:
            return "not reloaded: no pg_ctl found; reload the server (SELECT pg_reload_conf()) to apply"
        pg_ctl = Path(found)
    argv = [str(pg_ctl), "reload", "-D", str(data_dir)]
    if os.geteuid() == 0 and owner[0] != 0:
        import pwd

        argv = ["runuser", "-u", pwd.getpwuid(owner[0]).pw_name, "--", *argv]
    done = subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        return "the server is not running: it takes the files at its next start"
    return "reloaded with pg_ctl (not checked: give --admin-url to have the server check the files first)"
