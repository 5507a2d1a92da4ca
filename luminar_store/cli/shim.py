"""``luminar-db node-shim [DIR]``: make ``from database.access import db`` work in a node's repository."""

from __future__ import annotations

from pathlib import Path

import click

from luminar_store.compat import SHIM_NAMES, write_node_shim

__all__ = ["node_shim_command"]


@click.command("node-shim")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--force", is_flag=True, help="Replace files that exist with other content.")
def node_shim_command(directory: Path, force: bool) -> None:
    """Write DIR/database/__init__.py and DIR/database/access.py (DIR: the node's repository, default .) so that
    the reference node code's `from database.access import db` uses luminar_store.

    The files only re-export luminar_store.access (db, DatabaseStats, DatabaseTransaction, initialize_database,
    close_database, health_check); nothing is installed. Running it again is harmless; a file with other content
    (the reference's own database/access.py) is refused, named, unless --force.

    Example: luminar-db node-shim ~/LUM-subnet
    """
    for path, action in write_node_shim(directory, force=force):
        click.echo(f"{action} {path}")
    click.echo(f"`from database.access import {', '.join(SHIM_NAMES)}` now uses luminar_store when run from "
               f"{directory} (settings: .env there and the environment: LUMINAR_ENV, LUMINAR_DB_*)")
