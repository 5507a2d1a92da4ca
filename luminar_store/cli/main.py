"""The ``luminar-db`` group and its entry point; every command module is imported here, at the top."""

from __future__ import annotations

import click

from luminar_store.cli.analyze import analyze_command
from luminar_store.cli.bouncer import bouncer_group
from luminar_store.cli.common import start_cli
from luminar_store.cli.db import db_group
from luminar_store.cli.maps import export_group, map_command
from luminar_store.cli.migrate import migrate_group
from luminar_store.cli.monitor import health_command, metrics_command
from luminar_store.cli.ops import COMMANDS
from luminar_store.cli.realtime import realtime_group
from luminar_store.cli.reports import reports_group
from luminar_store.cli.roles import roles_group
from luminar_store.cli.shim import node_shim_command
from luminar_store.cli.tls import tls_group
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
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, envvar="LUMINAR_LOG_FORMAT",
              show_envvar=True, help="How the library's log lines reach stderr: text (warnings) or json (info and up, "
                                     "one JSON object a line, for log shippers) [default: text].")
def cli(log_format: str | None = None) -> None:
    """Luminar database layer: set up, migrate, inspect and maintain the PostgreSQL + PostGIS database.

    Settings come from the environment (LUMINAR_ENV, LUMINAR_DB_*, DATABASE_URL) and a .env file in the working
    directory, which never overrides a variable already set. --env selects an environment's whole target; a
    variable written for another environment that would point elsewhere is refused, never followed.

    Example: luminar-db migrate status
    """
    start_cli(log_format)


for _command in (*COMMANDS, node_shim_command, bouncer_group, db_group, migrate_group, reports_group, roles_group,
                 tls_group, realtime_group, export_group, map_command, analyze_command, metrics_command,
                 health_command):
    cli.add_command(_command)


def main() -> None:
    """Console entry point (``luminar-db``)."""
    cli(prog_name="luminar-db")
