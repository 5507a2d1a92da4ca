"""The ``luminar-db`` command line: one click group; ``migrations/manager.py`` and ``scripts/setup_database.py``
are thin doors into it.

Expected failures (every ``LuminarError``) print one line, ``error: ...``, and exit with the error's exit code;
no traceback.
"""

from __future__ import annotations

import click

from luminar_store.errors import LuminarError

__all__ = ["cli", "main", "LuminarGroup"]


class LuminarGroup(click.Group):
    """A click group that turns ``LuminarError`` into one line on stderr and a non-zero exit code."""

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except LuminarError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from None


@click.group(cls=LuminarGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="luminar_store")
def cli() -> None:
    """Luminar database layer: set up, migrate, inspect and maintain the PostgreSQL + PostGIS database.

    Settings come from the environment (LUMINAR_ENV, LUMINAR_DB_*, DATABASE_URL) and a .env file in the working
    directory, which never overrides a variable already set.

    Example: luminar-db migrate status
    """
    from luminar_store.config import load_dotenv_file

    load_dotenv_file()


def main() -> None:
    """Console entry point (``luminar-db``)."""
    cli(prog_name="luminar-db")


# Sub-commands register themselves on import; each module adds its commands to `cli`.
from luminar_store.cli import localdb as _localdb  # noqa: E402,F401
from luminar_store.cli import migrate as _migrate  # noqa: E402,F401
from luminar_store.cli import ops as _ops  # noqa: E402,F401
