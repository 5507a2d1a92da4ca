"""What every command shares: the options, the settings rule, confirmations, printing rows, warnings on stderr.

Destructive commands name their exact target (``Settings.target()``: database, host, port, environment) before they
act, in their question and in their output, ``--yes`` included; when stdin is not a terminal they refuse instead of
waiting for an answer.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from luminar_store.config import ENVIRONMENTS, Settings, load_dotenv_file, load_settings
from luminar_store.errors import OperationError

__all__ = ["env_option", "dir_option", "yes_option", "settings_for", "confirm", "print_rows", "start_cli"]

env_option = click.option("--env", type=click.Choice(ENVIRONMENTS), default=None,
                          help="Settings environment: selects its whole target (defaults and its own variables) "
                               "[default: LUMINAR_ENV, else local].")
dir_option = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
                          envvar="LUMINAR_MIGRATIONS_DIR", show_envvar=True,
                          help="Migrations directory [default: the migrations shipped with the package].")
yes_option = click.option("--yes", "-y", is_flag=True,
                          help="Do not ask for confirmation (needed when stdin is not a terminal).")


def settings_for(env: str | None) -> Settings:
    """The settings of ``--env`` (else ``LUMINAR_ENV``), by the one rule of ``luminar_store.config``, connected as
    the owner of the schema (``Settings.as_owner``): every command is an operator's."""
    return load_settings(env).as_owner()


def confirm(question: str, *, yes: bool, what: str) -> None:
    """Ask ``question`` on a terminal; without one, refuse (``OperationError``) unless ``--yes`` was given."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise OperationError(f"{what}; stdin is not a terminal, so confirm with --yes (with make: FORCE=1)")
    click.confirm(question, abort=True)


def print_rows(rows: list[tuple[str, str]]) -> None:
    """Labelled rows, the labels padded to one width."""
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")


class _Warnings(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


def start_cli() -> None:
    """What every entry point does first: read ``.env`` (never overriding the environment) and show the library's
    warnings (an unknown setting, ...) on stderr, one line each."""
    logger = logging.getLogger("luminar_store")
    if not any(isinstance(h, _Warnings) for h in logger.handlers):
        handler = _Warnings(logging.WARNING)
        logger.addHandler(handler)
        logger.setLevel(min(logger.level or logging.WARNING, logging.WARNING))
    load_dotenv_file()
