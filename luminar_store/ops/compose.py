"""Driving the Docker Compose database of ``docker-compose.yml`` (service ``luminar-db``; ``luminar-test-db`` for
``LUMINAR_ENV=testing``), for ``luminar-db db start|stop|status`` when a Docker engine answers.

The compose file reads the connection from ``LUMINAR_DB_*`` (``LUMINAR_TEST_DB_*`` for the test service); the
commands hand it the settings in force, so the container serves exactly what the settings connect to. The
image's superuser (``POSTGRES_USER``) is ``luminar_admin``: it only provisions (``init-scripts/`` at the first start,
``provision.provision_local`` at every ``db start``); its password never reaches the nodes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from luminar_store.config import Settings
from luminar_store.errors import OperationError
from luminar_store.ops.cluster import project_root

__all__ = ["SERVICES", "ADMIN_USER", "docker_answers", "compose_command", "service", "compose", "running",
           "admin_password", "admin_conninfo", "local_admin_url"]

SERVICES = {"local": "luminar-db", "testing": "luminar-test-db"}
#: The image's superuser (POSTGRES_USER in docker-compose.yml).
ADMIN_USER = "luminar_admin"


def docker_answers(*, timeout: float = 20) -> bool:
    """True when a Docker engine answers (``docker info`` succeeds); a client alone is not enough."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def compose_command() -> list[str] | None:
    """The Docker Compose command available: ``docker compose`` (plugin), else ``docker-compose``, else None.

    ``docker-compose`` is also looked for beside the running Python (a virtualenv's ``bin``).
    """
    if shutil.which("docker"):
        done = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False, timeout=30)
        if done.returncode == 0:
            return ["docker", "compose"]
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("docker-compose", path=path)
    return [found] if found else None


def service(settings: Settings) -> str:
    """The compose service that serves ``settings``; ``OperationError`` for an environment without one."""
    try:
        return SERVICES[settings.env]
    except KeyError:
        raise OperationError(f"docker-compose.yml has no service for LUMINAR_ENV={settings.env}; use the embedded "
                             "cluster: LUMINAR_DB_BACKEND=embedded") from None


def _admin_file(settings: Settings) -> Path:
    return project_root() / ".luminar" / f"{settings.env}.docker-admin.pw"


def admin_password(settings: Settings) -> str:
    """The password of the container's superuser (``LUMINAR_DB_ADMIN_PASSWORD``, else one made at random on first
    use and kept in ``.luminar/<env>.docker-admin.pw``, readable by its owner only): it only provisions, and never
    reaches the nodes."""
    given = os.environ.get("LUMINAR_DB_ADMIN_PASSWORD")
    if given:
        return given
    path = _admin_file(settings)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def admin_conninfo(settings: Settings) -> str:
    """The container's superuser's connection (for provisioning; never printed)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(host=settings.host, port=str(settings.port), user=ADMIN_USER, dbname="postgres",
                         password=admin_password(settings), sslmode="disable", connect_timeout="10")


def local_admin_url(nodes: Settings) -> str | None:
    """The administrator of the split database that ``nodes`` (the nodes' settings, with their owner) run on this
    machine: the embedded cluster's superuser, else the container's; None for a database run elsewhere or one
    login doing both (its own role then acts)."""
    from luminar_store.ops import cluster

    if not (nodes.owner and nodes.rules.runs_here):
        return None
    local = cluster.cluster_for(nodes)
    if cluster.status(local).initialized:
        return local.admin_conninfo()
    return admin_conninfo(nodes) if nodes.env in SERVICES and running(nodes) else None


def compose(settings: Settings, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``docker compose -f <project>/docker-compose.yml ARGS`` with the settings' connection handed over."""
    command = compose_command()
    if command is None:
        raise OperationError("a Docker engine answers but Docker Compose is missing; install the compose plugin, "
                             "or use the embedded cluster: LUMINAR_DB_BACKEND=embedded")
    env = dict(os.environ)
    prefix = "LUMINAR_TEST_DB_" if settings.env == "testing" else "LUMINAR_DB_"
    env.update({f"{prefix}USER": settings.user, f"{prefix}PASSWORD": settings.password,
                f"{prefix}NAME": settings.name, f"{prefix}PORT": str(settings.port),
                "LUMINAR_DB_ADMIN_PASSWORD": admin_password(settings)})
    if settings.owner and settings.env != "testing":
        env.update({"LUMINAR_DB_OWNER": settings.owner, "LUMINAR_DB_OWNER_PASSWORD": settings.owner_password})
    root = project_root()
    argv = [*command, "-f", str(root / "docker-compose.yml")]
    if settings.env == "testing":
        argv += ["--profile", "testing"]
    return subprocess.run([*argv, *args], cwd=root, env=env, text=True, capture_output=capture, check=False)


def running(settings: Settings) -> bool:
    """True when the settings' compose service has a running container (False without an engine or Compose)."""
    if settings.env not in SERVICES or not docker_answers() or compose_command() is None:
        return False
    done = compose(settings, "ps", "-q", SERVICES[settings.env], capture=True)
    ids = done.stdout.split() if done.returncode == 0 else []
    if not ids:
        return False
    inspect = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", ids[0]], capture_output=True,
                             text=True, check=False)
    return inspect.stdout.strip() == "true"
