"""A throw-away PostgreSQL + PostGIS server for the benchmark: made in a temporary directory, removed afterwards.

It is started like the test harness starts its server (``tests/support/pg_ctl``): the binaries come from
``luminar_store.ops.cluster.find_bindir()``; under root ``initdb`` and ``pg_ctl`` run as the unprivileged service user
(``luminar``) through ``runuser``, in a directory that user owns. The server listens on a free port of 127.0.0.1
with ``trust`` authentication (nothing else can reach it) and runs in its own session, so a Ctrl-C in the terminal
reaches the benchmark, whose ``finally`` stops the server, and not the server itself.

For fault scenarios, ``kill()`` crashes it (``kill -9`` of the postmaster, by its pid) and ``restart()`` starts it
again on the same directory and port.

Example::

    with ScratchServer() as server:
        conninfo = server.conninfo()
        server.kill()      # the server is gone: connections refused
        server.restart()   # crash recovery, then it accepts connections again
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from psycopg.conninfo import make_conninfo

from luminar_store.ops.cluster import find_bindir, is_root, service_user

__all__ = ["ScratchServer", "SERVER_SETTINGS", "stop_on_sigterm"]

#: Server settings of the scratch cluster: a small production-like configuration for a 2-core, few-GB machine.
#: synchronous_commit=off takes the disk's fsync wait (1-3 ms on a small VM, and noisy) out of every single-row
#: commit, so the per-call figures measure the client path being compared, not the disk (``--durable`` keeps it on).
SERVER_SETTINGS: dict[str, str] = {
    "shared_buffers": "512MB",
    "work_mem": "16MB",
    "maintenance_work_mem": "256MB",
    "effective_cache_size": "2GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "max_connections": "300",
    "synchronous_commit": "off",
    "timezone": "UTC",
    "log_timezone": "UTC",
}

DBNAME = "luminar_bench"
USER = "luminar_bench"


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the scratch servers


def stop_on_sigterm() -> None:
    """SIGTERM ends a run like Ctrl-C does: through the ``finally`` blocks, so no scratch server is left behind
    (they run in their own session and would outlive us)."""
    signal.signal(signal.SIGTERM, _terminate)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ScratchServer:
    """A scratch cluster: ``start()`` makes and starts it, ``stop()`` stops it and deletes its directory.

    Raises ``RuntimeError`` naming the step and the server's last log line when ``initdb`` or ``pg_ctl`` fails.
    """

    def __init__(self, *, durable: bool = False, host: str = "127.0.0.1", extra: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = 0
        self.durable = durable
        self.extra = dict(extra or {})  # more server settings (wal_level = logical for a publishing server)
        self.bindir = find_bindir()
        self.home: Path | None = None
        self.running = False

    def __enter__(self) -> ScratchServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def conninfo(self, dbname: str = DBNAME) -> str:
        """The libpq connection string of database ``dbname`` (trust authentication: no password)."""
        return make_conninfo(host=self.host, port=str(self.port), user=USER, dbname=dbname, sslmode="disable")

    @property
    def data_dir(self) -> Path:
        assert self.home is not None
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        assert self.home is not None
        return self.home / "postgresql.log"

    def _run(self, step: str, argv: list[str], *, timeout: float = 180) -> None:
        if is_root():
            argv = ["runuser", "-u", service_user(), "--", *argv]
        # cwd=/: our working directory may be closed to the service user. Own session: see the module's docs.
        done = subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=timeout, check=False,
                              start_new_session=True)
        if done.returncode != 0:
            tail = ""
            if self.home is not None and self.log_file.exists():
                lines = [x for x in self.log_file.read_text(errors="replace").splitlines() if x.strip()]
                tail = lines[-1] if lines else ""
            output = [x for x in (done.stderr or done.stdout).splitlines() if x.strip()]
            raise RuntimeError(f"scratch PostgreSQL: {step} failed: {tail or (output[-1] if output else 'no output')}")

    def start(self) -> None:
        """initdb in a new temporary directory, write the settings, start the server and create the database."""
        self.home = Path(tempfile.mkdtemp(prefix="luminar-bench-"))
        if is_root():
            user = service_user()
            shutil.chown(self.home, user=user)
        self.port = free_port(self.host)
        self._run("initdb", [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", USER, "--auth=trust",
                             "--encoding=UTF8", "--no-locale", "--no-sync"])
        settings = dict(SERVER_SETTINGS, listen_addresses=self.host, port=str(self.port),
                        unix_socket_directories=str(self.home))
        if self.durable:
            settings["synchronous_commit"] = "on"
        settings.update(self.extra)
        conf = "".join(f"{key} = '{value}'\n" for key, value in settings.items())
        with (self.data_dir / "postgresql.conf").open("a") as handle:
            handle.write("\n# luminar benchmark scratch server\n" + conf)
        self._run("pg_ctl start", [str(self.bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l",
                                   str(self.log_file), "-w", "-t", "120"])
        self.running = True
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))

    def postmaster_pid(self) -> int | None:
        """The running postmaster's process id (``postmaster.pid``), or ``None``."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self, *, timeout: float = 60) -> None:
        """A crash: ``kill -9`` of the postmaster (by its pid, nothing else), then wait until it and the backends
        it had started are gone (they exit when they notice their postmaster died), so that ``restart()`` finds no
        process still holding the old shared memory. Raises ``RuntimeError`` when they outlive ``timeout``."""
        pid = self.postmaster_pid()
        if pid is None:
            raise RuntimeError("scratch PostgreSQL: kill: no postmaster.pid (is the server running?)")
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        self.running = False
        deadline = time.monotonic() + timeout
        while any(_alive(p) for p in [pid, *children]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"scratch PostgreSQL: processes of the killed postmaster {pid} still run")
            time.sleep(0.02)

    def restart(self) -> None:
        """Start the server again on the same directory and port (after ``kill()``: crash recovery first); returns
        once it accepts connections."""
        self._run("pg_ctl start", [str(self.bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l",
                                   str(self.log_file), "-w", "-t", "120"])
        self.running = True

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory. Safe to call twice; never raises."""
        if self.running and self.home is not None:
            try:
                self._run("pg_ctl stop", [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m",
                                          "fast", "-w", "-t", "60"], timeout=120)
            except (RuntimeError, subprocess.TimeoutExpired, OSError):
                # Last resort: the postmaster's pid, and only that process.
                try:
                    pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
                    os.kill(pid, 9)
                except (OSError, ValueError, IndexError):
                    pass
            self.running = False
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None


def _children(pid: int) -> list[int]:
    """The direct children of process ``pid`` (from /proc; empty where /proc does not say)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] not in ("Z", "X")
