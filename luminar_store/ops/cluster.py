"""The embedded local PostgreSQL + PostGIS cluster, started from the machine's own PostgreSQL binaries.

PostgreSQL refuses to run as root, so under root every server command runs as an unprivileged service user
(``LUMINAR_PG_USER``, default ``luminar``), created on first use.

A cluster is addressed by its *handle*, a path such as ``<repo>/.luminar/local``. The handle is either the cluster's
home directory itself or a symbolic link to it: under root the home must be reachable by the service user, so when
the repository lives where that user cannot pass (``/root/...``), or the Unix socket path would be too long, the
home is made under ``/var/tmp/luminar-<hash of the handle>`` and the handle links there. A home holds::

    data/             the cluster (PGDATA), owned by the user the server runs as
    run/              the Unix socket directory
    postgresql.log    the server log
    admin.pw          the bootstrap superuser's password (split clusters; readable by its owner only)

The bootstrap superuser of a split cluster (settings with an owner, as local's are) is ``luminar_admin``, whose
random password is kept in ``admin.pw`` of the home (0600) for this machine's provisioning alone: the owner and the
nodes' login are ordinary roles that provisioning makes (``luminar_store.ops.provision.provision_local``). A cluster
made before that (no ``admin.pw``), or for settings without an owner, has the configured role as its bootstrap
superuser, as the ``postgis/postgis`` image does with ``POSTGRES_USER``. ``pg_hba.conf`` asks every connection
(Unix socket, 127.0.0.1, ::1) for a password.

The database and PostGIS inside the cluster are made by ``luminar_store.ops.provision`` (as for a Docker or any
other server); this module only runs the server.

Example::

    >>> cluster = Cluster(handle=Path(".luminar/local"), port=5432)
    >>> start(cluster)          # initdb on first use, then pg_ctl start
    'started'
    >>> stop(cluster)
    True
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from luminar_store.config import DEV_PASSWORD, Settings
from luminar_store.errors import ConfigError, OperationError

__all__ = [
    "SERVICE_USER",
    "ADMIN_ROLE",
    "find_bindir",
    "postgis_available",
    "service_user",
    "is_root",
    "project_root",
    "cluster_for",
    "Cluster",
    "ClusterStatus",
    "locate",
    "init",
    "start",
    "stop",
    "status",
]

SERVICE_USER = os.environ.get("LUMINAR_PG_USER", "luminar")
_PG_LIB = Path("/usr/lib/postgresql")
_FALLBACK_BASE = Path("/var/tmp")
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, with the closing NUL
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
#: The bootstrap superuser of a split cluster: it only provisions.
ADMIN_ROLE = "luminar_admin"


# -- binaries and the service user ------------------------------------------------------------------------------
def _majors() -> list[int]:
    if not _PG_LIB.is_dir():
        return []
    return sorted((int(p.name) for p in _PG_LIB.iterdir() if re.fullmatch(r"\d+", p.name)), reverse=True)


def postgis_available(major: int) -> bool:
    """True when the PostGIS extension is installed for PostgreSQL ``major``."""
    return Path(f"/usr/share/postgresql/{major}/extension/postgis.control").exists()


def find_bindir() -> Path:
    """The PostgreSQL server binaries to use: ``LUMINAR_PG_BINDIR``, else the newest major that has PostGIS.

    Raises ``OperationError`` naming the fix (``make dev-setup``) when no server binaries are installed.
    """
    explicit = os.environ.get("LUMINAR_PG_BINDIR")
    if explicit:
        path = Path(explicit)
        if not (path / "pg_ctl").exists():
            raise OperationError(f"LUMINAR_PG_BINDIR={explicit} has no pg_ctl; point it at PostgreSQL's bin directory")
        return path
    majors = [m for m in _majors() if (_PG_LIB / str(m) / "bin" / "pg_ctl").exists()]
    with_postgis = [m for m in majors if postgis_available(m)]
    chosen = (with_postgis or majors or [None])[0]
    if chosen is None:
        raise OperationError("no PostgreSQL server binaries found under /usr/lib/postgresql; run: make dev-setup")
    return _PG_LIB / str(chosen) / "bin"


def is_root() -> bool:
    """True when this process runs as root (the server must then run as ``service_user()``)."""
    return os.geteuid() == 0


def service_user() -> str:
    """The unprivileged user the server runs as under root, created when missing."""
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                               SERVICE_USER], capture_output=True, text=True, check=False)
        try:
            pwd.getpwnam(SERVICE_USER)  # made now, or by another process a moment ago
        except KeyError:
            raise OperationError(f"could not create the service user {SERVICE_USER} (LUMINAR_PG_USER): "
                                 f"{_last_line(made.stderr)}") from None
    return SERVICE_USER


def _as_server(cmd: list[str | Path], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` as the user the server runs as (the service user under root, else ourselves)."""
    argv = [str(c) for c in cmd]
    if is_root():
        argv = ["runuser", "-u", service_user(), "--", *argv]
    try:
        # cwd=/: the caller's working directory may be closed to the service user.
        return subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise OperationError(f"{Path(str(cmd[0])).name} did not finish within {timeout:g}s") from None


def _give_to_server(path: Path) -> None:
    if is_root():
        shutil.chown(path, user=service_user(), group=pwd.getpwnam(service_user()).pw_gid)


def _server_can_reach(path: Path) -> bool:
    """True when the server's user can pass through ``path`` (a directory)."""
    if not is_root():
        return os.access(path, os.X_OK)
    done = subprocess.run(["runuser", "-u", service_user(), "--", "test", "-x", str(path)], cwd="/",
                          capture_output=True, check=False, timeout=30)
    return done.returncode == 0


def project_root() -> Path:
    """The project directory: the nearest folder, from the working directory up, holding ``docker-compose.yml``
    and ``migrations/``; the working directory when there is none."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "docker-compose.yml").is_file() and (folder / "migrations").is_dir():
            return folder
    return here


def cluster_for(settings: Settings) -> Cluster:
    """The embedded cluster that serves ``settings``: kept at ``LUMINAR_LOCAL_DIR`` (default ``.luminar/`` of the
    project directory) under the environment's name."""
    base = Path(os.environ.get("LUMINAR_LOCAL_DIR") or project_root() / ".luminar")
    return Cluster.from_settings(settings, base / settings.env)


# -- where a cluster lives --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cluster:
    """An embedded cluster: its handle (see the module docs) and how it listens. ``repr()`` hides the password."""

    handle: Path
    port: int = 5432
    host: str = "localhost"
    user: str = "luminar_dev"
    password: str = field(default=DEV_PASSWORD, repr=False)
    dbname: str = "luminar_local"
    #: Whether a new cluster's bootstrap superuser is ``ADMIN_ROLE`` (True: the settings have an owner) rather than
    #: ``user``.
    split: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, handle: Path) -> Cluster:
        """The cluster that serves ``settings`` (host, port, role, password, database), kept at ``handle``."""
        return cls(handle=Path(handle), port=settings.port, host=settings.host, user=settings.user,
                   password=settings.password, dbname=settings.name, split=bool(settings.owner))

    @property
    def admin_file(self) -> Path:
        return self.home / "admin.pw"

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        """A conninfo string of the cluster's bootstrap superuser: ``ADMIN_ROLE`` with the password of
        ``admin_file``, or ``user`` in a cluster made without one (for connecting, never for printing)."""
        from psycopg.conninfo import make_conninfo

        if not self.admin_file.is_file():
            return self.conninfo(dbname)
        return make_conninfo(host=self.host, port=str(self.port), user=ADMIN_ROLE, dbname=dbname,
                             password=self.admin_file.read_text().strip(), sslmode="disable", connect_timeout="10")

    @property
    def home(self) -> Path:
        return self.handle.resolve()

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_file(self) -> Path:
        return self.home / "postgresql.log"

    def conninfo(self, dbname: str | None = None) -> str:
        """A libpq conninfo string (with the password: for connecting, never for printing)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(host=self.host, port=str(self.port), user=self.user, password=self.password,
                             dbname=dbname or self.dbname, sslmode="disable", connect_timeout="10")


@dataclass(frozen=True)
class ClusterStatus:
    """What ``status()`` found: whether the cluster exists and runs, and where."""

    initialized: bool
    running: bool
    pid: int | None
    port: int | None
    home: Path | None
    log_file: Path | None


def _fallback_home(handle: Path) -> Path:
    digest = hashlib.sha256(str(handle.absolute()).encode()).hexdigest()[:12]
    home = _FALLBACK_BASE / f"luminar-{digest}"
    if home.is_symlink() or (home.exists() and not home.is_dir()):
        raise OperationError(f"{home} exists and is not a directory; remove it and run again")
    if home.exists():
        owner = home.stat().st_uid
        allowed = {0, os.geteuid()} | ({pwd.getpwnam(service_user()).pw_uid} if is_root() else set())
        if owner not in allowed:
            raise OperationError(f"{home} belongs to another user (uid {owner}); remove it and run again")
    else:
        home.mkdir(mode=0o700)
    return home


def locate(handle: Path) -> Path:
    """The home directory of the cluster at ``handle``, made on first use, and returned resolved.

    An existing handle (directory, or link to a directory) is kept. Otherwise the home is ``handle`` itself when the
    server's user can reach it and the Unix socket path fits, else a directory under ``/var/tmp`` that ``handle``
    then links to. Raises ``OperationError`` when a fallback directory is unusable.
    """
    handle = Path(handle).absolute()
    if handle.is_symlink() and not handle.resolve().is_dir():
        handle.unlink()  # the linked home was removed (a cleaned /var/tmp): start afresh
    if handle.is_dir():
        return handle.resolve()
    handle.parent.mkdir(parents=True, exist_ok=True)
    socket_fits = len(str(handle / "run" / ".s.PGSQL.65535")) <= _SOCKET_PATH_MAX
    if socket_fits and _server_can_reach(handle.parent):
        handle.mkdir(mode=0o700)
        home = handle
    else:
        home = _fallback_home(handle)
        handle.symlink_to(home, target_is_directory=True)
    _give_to_server(home)
    return home.resolve()


# -- lifecycle ----------------------------------------------------------------------------------------------------
def init(cluster: Cluster, *, timeout: float = 120) -> bool:
    """Create the cluster (``initdb``) unless it exists. Returns True when it was created now.

    The bootstrap superuser is ``ADMIN_ROLE`` with a new random password kept in ``admin_file`` when the cluster
    is split, else the configured role with the configured password (SCRAM); every connection, local or TCP, must
    give its password. Raises ``ConfigError`` without a password, ``OperationError`` when initdb fails.
    """
    home = locate(cluster.handle)
    data = home / "data"
    if (data / "PG_VERSION").exists():
        return False
    if not cluster.password or "\n" in cluster.password:
        raise ConfigError("the embedded cluster needs a one-line password: set LUMINAR_DB_PASSWORD "
                          f"(local default {DEV_PASSWORD})")
    if data.exists():
        shutil.rmtree(data)  # the remains of an initdb that did not finish
    superuser, password = cluster.user, cluster.password
    if cluster.split:
        superuser, password = ADMIN_ROLE, secrets.token_urlsafe(24)
        fd = os.open(cluster.admin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(password + "\n")
    pwfile = home / "initdb.pw"
    pwfile.touch(mode=0o600)
    try:
        pwfile.write_text(password + "\n")
        _give_to_server(pwfile)
        done = _as_server([find_bindir() / "initdb", "-D", data, "-U", superuser, "--pwfile", pwfile,
                           "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"], timeout=timeout)
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        cluster.admin_file.unlink(missing_ok=True)
        raise OperationError(f"initdb failed for {data}: {_last_line(done.stderr or done.stdout)}")
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("\n# Where the cluster listens: rewritten by luminar_store.ops.cluster at every start.\n"
                   "include_if_exists = 'luminar.conf'\n")
    return True


def status(cluster: Cluster, *, timeout: float = 30) -> ClusterStatus:
    """Whether the cluster at ``cluster.handle`` exists and runs (``pg_ctl status``), with its pid and port."""
    handle = Path(cluster.handle)
    if not handle.is_dir() or not (cluster.data_dir / "PG_VERSION").exists():
        return ClusterStatus(False, False, None, None, handle.resolve() if handle.is_dir() else None, None)
    done = _as_server([find_bindir() / "pg_ctl", "status", "-D", cluster.data_dir], timeout=timeout)
    running = done.returncode == 0
    pid = port = None
    if running:
        pid, port = _postmaster_pid_and_port(cluster.data_dir)
    return ClusterStatus(True, running, pid, port, cluster.home, cluster.log_file)


def start(cluster: Cluster, *, timeout: float = 60) -> str:
    """Start the cluster (creating it first if needed).

    Returns ``"started"``, or ``"already running"`` when it was. Raises ``ConfigError`` when ``cluster.host`` is not
    this machine, ``OperationError`` when the port is taken by another server, the cluster runs on another port
    (the message says which, and the setting that reaches it), or the server does not come up within ``timeout``
    seconds (the message names the log file).
    """
    if cluster.host not in _LOCAL_HOSTS:
        raise ConfigError(f"the embedded cluster listens on this machine only; LUMINAR_DB_HOST={cluster.host} is "
                          "not local: set LUMINAR_DB_HOST=localhost")
    now = status(cluster)
    if now.running:
        if now.port is not None and now.port != cluster.port:
            raise OperationError(f"the cluster at {cluster.handle} already runs on port {now.port}, not "
                                 f"{cluster.port}; to use it, set LUMINAR_DB_PORT={now.port} in the shell, or the "
                                 "environment's own port in .env (LUMINAR_LOCAL_DB_PORT, LUMINAR_TEST_DB_PORT)")
        return "already running"
    _check_port_free(cluster.host, cluster.port)
    init(cluster)
    cluster.socket_dir.mkdir(mode=0o700, exist_ok=True)
    _give_to_server(cluster.socket_dir)
    _write_listen_conf(cluster)
    done = _as_server([find_bindir() / "pg_ctl", "start", "-D", cluster.data_dir, "-l", cluster.log_file, "-w",
                       "-t", str(int(timeout))], timeout=timeout + 30)
    if done.returncode != 0:
        raise OperationError(f"the local PostgreSQL did not start within {timeout:g}s: "
                             f"{_last_line(_tail(cluster.log_file) or done.stderr or done.stdout)} "
                             f"(log: {cluster.log_file})")
    return "started"


def stop(cluster: Cluster, *, timeout: float = 60) -> bool:
    """Stop the cluster (fast shutdown: open sessions are ended). Returns False when it was not running.

    Raises ``OperationError`` when the server does not stop within ``timeout`` seconds.
    """
    if not status(cluster).running:
        return False
    done = _as_server([find_bindir() / "pg_ctl", "stop", "-D", cluster.data_dir, "-m", "fast", "-w",
                       "-t", str(int(timeout))], timeout=timeout + 30)
    if done.returncode != 0:
        raise OperationError(f"the local PostgreSQL did not stop: {_last_line(done.stderr or done.stdout)}")
    return True


def _write_listen_conf(cluster: Cluster) -> None:
    def quoted(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    conf = cluster.data_dir / "luminar.conf"
    conf.write_text(
        "# Written by luminar_store.ops.cluster at every start from the settings in force (LUMINAR_DB_HOST/PORT).\n"
        f"listen_addresses = {quoted(cluster.host)}\n"
        f"port = {int(cluster.port)}\n"
        f"unix_socket_directories = {quoted(str(cluster.socket_dir))}\n"
        "timezone = 'UTC'\n"
        "log_timezone = 'UTC'\n"
    )
    _give_to_server(conf)


def _port_taken(host: str, port: int) -> bool:
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.settimeout(1)
            if probe.connect_ex(address) == 0:
                return True
    return False


def _check_port_free(host: str, port: int) -> None:
    if not _port_taken(host, port):
        return
    free = next((p for p in range(port + 1, min(port + 50, 65535)) if not _port_taken(host, p)), None)
    example = f"LUMINAR_DB_PORT={free}" if free else "LUMINAR_DB_PORT=<a free port>"
    raise OperationError(f"port {port} on {host} is already taken by another server; set {example} "
                         "(in .env or the environment) or stop that server")


def _postmaster_pid_and_port(data: Path) -> tuple[int | None, int | None]:
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), int(lines[3])
    except (OSError, IndexError, ValueError):
        return None, None


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-4000:]
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
