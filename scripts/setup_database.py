#!/usr/bin/env python3
"""The specification's ``python scripts/setup_database.py <command>``: a thin door into the ``luminar-db`` CLI.

Example: python scripts/setup_database.py sample-data --env=testing
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from luminar_store.cli import cli  # noqa: E402
from luminar_store.cli.common import start_cli  # noqa: E402

if __name__ == "__main__":
    start_cli()
    cli(prog_name="setup_database.py")
