#!/usr/bin/env python3
"""Thin door into the migration commands, as the specification shows them.

    python migrations/manager.py migrate [--dry-run | --target VERSION | ...]   apply pending migrations
    python migrations/manager.py status [--exit-code]                           show applied / pending
    python migrations/manager.py create NAME                                     new migration file
    python migrations/manager.py rollback [--allow-production]                  undo the latest migration
    python migrations/manager.py verify                                          applied files unchanged?

These are the very commands of ``luminar-db migrate`` (see ``luminar_store/cli/migrate.py``). Works from a checkout
without installing the package: the repository root is put on ``sys.path`` first.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click  # noqa: E402

from luminar_store.cli import LuminarGroup  # noqa: E402
from luminar_store.cli import migrate as commands  # noqa: E402
from luminar_store.cli.common import start_cli  # noqa: E402


@click.group(cls=LuminarGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def manager() -> None:
    """Apply, inspect, create, roll back and verify database migrations (same as `luminar-db migrate ...`).

    Settings come from the environment (LUMINAR_ENV, LUMINAR_DB_*, DATABASE_URL) and a .env file in the working
    directory, which never overrides a variable already set.

    Example: python migrations/manager.py migrate
    """


manager.add_command(commands.up_command, "migrate")
for _command in (commands.status_command, commands.create_command, commands.rollback_command,
                 commands.verify_command):
    manager.add_command(_command)


def main() -> None:
    start_cli()
    manager(prog_name="manager.py")


if __name__ == "__main__":
    main()
