"""luminar_store: the PostgreSQL + PostGIS data layer of the Luminar network.

``from luminar_store import db`` gives the facade with the calls of the specification
(``await db.get_recent_events(hours=24, limit=100)`` ...).
"""

from __future__ import annotations

import logging

# A library logs through `logging` only: what its records become is the application's choice. Without this handler,
# Python's last-resort handler would print our warnings on stderr of every node that configured no logging.
logging.getLogger("luminar_store").addHandler(logging.NullHandler())
# psycopg_pool logs each failed connection attempt as a warning; our own lines say once per incident that a server was
# lost and when it is back. With no logging configured, its warnings would reach stderr through the last-resort
# handler too: a NullHandler keeps them for the application's handlers (they still propagate), off a bare stderr.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = ["__version__", "db", "Database", "errors", "models", "sync_manager"]


def __getattr__(name: str):
    # Imported lazily so that `python migrations/manager.py` and the config module do not pay for the pool.
    if name == "db":
        from luminar_store.access import db

        return db
    if name == "Database":
        from luminar_store.database import Database

        return Database
    if name == "sync_manager":
        from luminar_store.syncing import sync_manager

        return sync_manager
    if name in ("errors", "models"):
        import importlib

        return importlib.import_module(f"luminar_store.{name}")
    raise AttributeError(f"module 'luminar_store' has no attribute {name!r}")
