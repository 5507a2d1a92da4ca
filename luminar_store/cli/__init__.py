"""The ``luminar-db`` command line: one click group (``main``); ``migrations/manager.py`` and
``scripts/setup_database.py`` are thin doors into it.

Expected failures (every ``LuminarError``) print one line, ``error: ...``, and exit with the error's exit code;
no traceback.
"""

from luminar_store.cli.main import LuminarGroup, cli, main

__all__ = ["cli", "main", "LuminarGroup"]
