"""Running the command line from tests: what a shell exports to point ``luminar-db`` at a database.

The fixture ``cli_run`` (conftest) invokes the command line in-process; ``cli_env`` gives it the environment.
"""

from __future__ import annotations

from luminar_store.config import Settings

__all__ = ["cli_env", "one_line_error"]


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """What a shell would export to point the commands at ``settings``' database (its environment included)."""
    return {"LUMINAR_ENV": settings.env, "LUMINAR_DB_HOST": settings.host, "LUMINAR_DB_PORT": str(settings.port),
            "LUMINAR_DB_NAME": settings.name, "LUMINAR_DB_USER": settings.user,
            "LUMINAR_DB_PASSWORD": settings.password, **extra}


def one_line_error(result) -> str:
    """The one ``Error:`` line of a command's output (asserting there is exactly one and no traceback)."""
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]
