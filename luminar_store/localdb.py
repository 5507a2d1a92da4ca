"""The embedded local PostgreSQL + PostGIS cluster, started from the machine's own PostgreSQL binaries.

PostgreSQL refuses to run as root, so under root every server command runs as an unprivileged service user
(``LUMINAR_PG_USER``, default ``luminar``), created on first use.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from pathlib import Path

from luminar_store.errors import OperationError

__all__ = ["find_bindir", "postgis_available", "service_user", "is_root", "SERVICE_USER"]

SERVICE_USER = os.environ.get("LUMINAR_PG_USER", "luminar")
_PG_LIB = Path("/usr/lib/postgresql")


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
    return os.geteuid() == 0


def service_user() -> str:
    """The unprivileged user the server runs as under root, created when missing."""
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
    return SERVICE_USER
