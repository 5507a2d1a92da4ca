"""What every command shares: the options, the settings rule, confirmations, printing rows, warnings on stderr.

Destructive commands name their exact target (``Settings.target()``: database, host, port, environment) before they
act, in their question and in their output, ``--yes`` included; when stdin is not a terminal they refuse instead of
waiting for an answer.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
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


#: What the library's state-change lines carry beside their message (``extra``): ``event`` is one of server_lost,
#: server_back, replica_skipped, replica_back; ``where`` names the server (never a password).
_STATE_FIELDS = ("event", "where", "down_seconds", "lag_bytes")


class _JsonLines(logging.Handler):
    """One JSON object a line on stderr, for log shippers: time (UTC, ISO 8601), level, logger, message, the
    state-change fields (``_STATE_FIELDS``) when the record has them, and the exception's text when there is one."""

    def emit(self, record: logging.LogRecord) -> None:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        entry.update({key: getattr(record, key) for key in _STATE_FIELDS if hasattr(record, key)})
        if record.exc_info:
            entry["exception"] = logging.Formatter().formatException(record.exc_info)
        click.echo(json.dumps(entry), err=True)


#: ``--log-format`` / ``LUMINAR_LOG_FORMAT``: ``text`` (warnings, one line each) or ``json`` (info and up, JSON lines).
LOG_FORMATS = ("text", "json")


def start_cli(log_format: str | None = None) -> None:
    """What every entry point does first: read ``.env`` (never overriding the environment) and show the library's
    warnings (an unknown setting, ...) on stderr, one line each; with ``log_format`` ``json`` (else
    ``LUMINAR_LOG_FORMAT``) its records from info up (state changes: server lost and back, replica skipped and back)
    as JSON lines instead."""
    _log_to_stderr(log_format or os.environ.get("LUMINAR_LOG_FORMAT"))
    load_dotenv_file()
    if not log_format and os.environ.get("LUMINAR_LOG_FORMAT"):  # .env may name it
        _log_to_stderr(os.environ["LUMINAR_LOG_FORMAT"])


def _log_to_stderr(log_format: str | None) -> None:
    log_format = (log_format or "text").strip().lower()
    if log_format not in LOG_FORMATS:
        raise click.BadParameter(f"must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}",
                                 param_hint="--log-format / LUMINAR_LOG_FORMAT")
    logger = logging.getLogger("luminar_store")
    for handler in [h for h in logger.handlers if isinstance(h, _Warnings | _JsonLines)]:
        logger.removeHandler(handler)
    if log_format == "json":
        logger.addHandler(_JsonLines(logging.INFO))
        logger.setLevel(logging.INFO)
    else:
        logger.addHandler(_Warnings(logging.WARNING))
        logger.setLevel(min(logger.level or logging.WARNING, logging.WARNING))
