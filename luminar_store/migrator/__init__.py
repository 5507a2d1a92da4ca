"""The migration runner: lock, plan, apply, record, verify and roll back ``migrations/*.sql``.

One module a concern:

- ``files``: where the files live (``DEFAULT_DIR``, ``migrations_directory``), discovery, naming rules,
  ``-- migrate:`` sections, statement splitting, checksums, ``create_migration``;
- ``recorder``: the bookkeeping table ``public.schema_migrations`` and the advisory lock, written under the
  runner's own session settings, never under a migration file's ``SET``\\ s;
- ``plan``: states and plans from files and records (pure);
- ``executor``: one code path that runs a file's statements, in a transaction or (``-- migrate:no-transaction``)
  not, for applying and rolling back;
- ``runner``: the ``Migrator`` facade and ``migrate_database``.

Example::

    >>> from luminar_store.migrator import Migrator, migrations_directory
    >>> Migrator("host=localhost dbname=luminar_local user=luminar_dev", migrations_directory(), out=print).migrate()
    applied 20250101000000_initial_schema (84 ms)
"""

from luminar_store.migrator.files import (
    DEFAULT_DIR,
    FILENAME_RE,
    NAME_RE,
    TEMPLATE,
    Migration,
    Statement,
    checksum,
    create_migration,
    discover_migrations,
    migrations_directory,
    parse_migration,
    parse_migration_text,
    split_statements,
)
from luminar_store.migrator.plan import MigrationStatus
from luminar_store.migrator.recorder import LOCK_KEY, AppliedMigration, Recorder
from luminar_store.migrator.runner import Migrator, migrate_database

__all__ = [
    "DEFAULT_DIR",
    "LOCK_KEY",
    "TEMPLATE",
    "FILENAME_RE",
    "NAME_RE",
    "Statement",
    "Migration",
    "AppliedMigration",
    "MigrationStatus",
    "Migrator",
    "Recorder",
    "migrate_database",
    "migrations_directory",
    "create_migration",
    "discover_migrations",
    "parse_migration",
    "parse_migration_text",
    "split_statements",
    "checksum",
]
