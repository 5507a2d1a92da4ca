"""The ``Migrator`` facade: lock, plan, apply, record, verify and roll back ``migrations/*.sql``.

It composes the other modules of ``luminar_store.migrator``: ``files`` (what the files say), ``recorder`` (the
``schema_migrations`` table and the advisory lock), ``plan`` (what to do, pure) and ``executor`` (one code path
that runs a file's statements, wrapped in a transaction or not).

Running
    Each transactional file runs in one transaction together with its record: a failing file leaves no trace.
    A ``-- migrate:no-transaction`` file runs its statements one by one in autocommit and its record is written
    after them. If such a file fails part-way it is recorded as failed (``dirty``) and every later run stops until
    the database is fixed by hand and the failure resolved (``mark_resolved`` / ``retry``). Records are written
    under the runner's own session settings, never under a file's ``SET``\\ s, which never reach the next file.

Safety
    A run holds the session advisory lock ``LOCK_KEY`` and reads the applied state only after taking it, so any
    number of nodes may start at once. An applied file whose text changed stops ``migrate`` until accepted; a
    pending file older than the newest applied one is refused unless ``allow_out_of_order``.

Example::

    >>> Migrator("host=localhost dbname=luminar_local user=luminar_dev", out=print).migrate()
    applied 20250101000000_initial_schema (84 ms)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import psycopg

from luminar_store.config import Settings
from luminar_store.errors import MigrationError
from luminar_store.migrator.executor import StatementFailed, run_file
from luminar_store.migrator.files import DEFAULT_DIR, Migration, create_migration, discover_migrations
from luminar_store.migrator.plan import (
    NEEDS_ATTENTION,
    MigrationStatus,
    failed_message,
    plan,
    resolutions,
    statuses,
    version_of,
)
from luminar_store.migrator.recorder import Recorder

__all__ = ["Migrator", "migrate_database"]


class Migrator:
    """Runs the migrations of ``directory`` against the database of ``target`` (``Settings``, or a connection
    string, which is read as ``Settings.from_conninfo`` reads it).

    ``lock_timeout`` bounds the wait for another run's lock (seconds; 0 = do not wait); ``environment`` is the
    settings' environment (``rollback`` refuses ``production`` unless told); ``applied_by`` overrides the recorded
    ``role@host``; ``out`` receives one human line per event (None: silent). Every method raises
    ``DatabaseUnavailableError`` when the server cannot be reached and ``MigrationError`` when it refuses to go on.
    Connections open through ``luminar_store.ops.connect`` (one "cannot reach" text); the password is never printed.
    """

    def __init__(self, target: str | Settings, directory: Path | str = DEFAULT_DIR, *, lock_timeout: float = 60.0,
                 environment: str | None = None, applied_by: str | None = None,
                 out: Callable[[str], object] | None = None) -> None:
        if isinstance(target, Settings):
            # The primary's own address when the settings name one (LUMINAR_DB_DIRECT_URL): never through a pooler.
            target = target.direct()
            self.settings = target if environment is None else replace(target, env=environment)
        else:
            self.settings = Settings.from_conninfo(target, environment or "local")
        self.environment = self.settings.env
        self.directory = Path(directory)
        self.lock_timeout = float(lock_timeout)
        self.applied_by = applied_by
        self._out = out

    def __repr__(self) -> str:
        return f"Migrator({self.where()}, directory={str(self.directory)!r})"

    # -- connection: through the operations layer's one door -------------------------------------------------------
    def where(self) -> str:
        """``host H, port P, database D`` of the target (no user, no password)."""
        return self.settings.describe()

    def _connect(self) -> psycopg.Connection:
        from luminar_store.ops.connect import connect

        return connect(self.settings)

    def _recorder(self, conn: psycopg.Connection) -> Recorder:
        return Recorder(conn, applied_by=self.applied_by)

    def wait_until_ready(self, seconds: float) -> None:
        """Retry connecting for up to ``seconds`` (a server still starting); raises ``DatabaseUnavailableError``."""
        from luminar_store.ops.connect import connect

        with connect(self.settings, retry_for=seconds):
            pass

    def _say(self, line: str) -> None:
        if self._out is not None:
            self._out(line)

    # -- public operations ---------------------------------------------------------------------------------------
    def discover(self) -> list[Migration]:
        """The parsed files of the directory (see ``discover_migrations``)."""
        return discover_migrations(self.directory)

    def create(self, name: str) -> Path:
        """Write a new migration file from the template (see ``create_migration``)."""
        path = create_migration(self.directory, name)
        self._say(f"created {path}")
        return path

    def status(self) -> list[MigrationStatus]:
        """Every version known to the files or the records, with its state; reads without the lock, writes nothing."""
        files = self.discover()
        with self._connect() as conn:
            return statuses(files, self._recorder(conn).applied())

    def verify(self) -> list[MigrationStatus]:
        """The applied versions needing attention (changed, missing, failed); an empty list means all is well."""
        return [s for s in self.status() if s.state in NEEDS_ATTENTION]

    def plan(self, target: str | None = None, *, allow_out_of_order: bool = False) -> list[Migration]:
        """What ``migrate`` would apply now, in order; raises ``MigrationError`` where ``migrate`` would refuse.

        Reads without the lock and writes nothing.
        """
        files = self.discover()
        target = self._target(target, files)
        with self._connect() as conn:
            return plan(files, self._recorder(conn).applied(), target, allow_out_of_order)

    def _target(self, target: str | None, files: list[Migration]) -> str | None:
        if target is None:
            return None
        version = version_of(target)
        if version not in {m.version for m in files}:
            raise MigrationError(f"--target {version}: no migration file in {self.directory} has that version")
        return version

    def migrate(self, target: str | None = None, *, dry_run: bool = False, allow_out_of_order: bool = False,
                accept_checksums: Iterable[str] = (), mark_resolved: Iterable[str] = (),
                retry: Iterable[str] = ()) -> list[Migration]:
        """Apply every pending migration (up to and including ``target``) and return those applied, in order.

        ``dry_run`` only plans and says what it would do (nothing is written, not even ``schema_migrations``).
        Resolutions, written under the lock before applying: ``accept_checksums`` records the current text of
        edited applied files as the applied one; ``mark_resolved`` records failed no-transaction files as applied;
        ``retry`` forgets their failure so that they run again.
        Raises ``MigrationError`` naming the file, line and server message when a file fails (that file leaves no
        trace unless it is a no-transaction file; earlier files stay applied), and before touching anything when
        a file failed earlier, an applied file changed, or a pending file is older than the newest applied one.
        """
        files = self.discover()  # a broken file fails before anything is touched
        target = self._target(target, files)
        with self._connect() as conn:
            recorder = self._recorder(conn)
            if not dry_run:
                recorder.lock(self.lock_timeout)
                recorder.ensure_table()  # read after the lock: the state another run left is the one we see
            applied = recorder.applied()
            writes = resolutions(applied, {m.version: m for m in files}, accept_checksums, mark_resolved, retry)
            for w in writes:
                if w.record is None:
                    del applied[w.version]
                else:
                    applied[w.version] = w.record
            todo = plan(files, applied, target, allow_out_of_order)  # refuses before anything is written
            if writes and not dry_run:
                with conn.transaction():
                    for w in writes:
                        w.write(recorder)
            for w in writes:
                self._say(("would " if dry_run else "") + w.line)
            for s in statuses(files, applied):
                if s.state == "missing":
                    self._say(f"warning: {s.label} is applied but its file is missing from {self.directory}")
            if dry_run:
                for m in todo:
                    self._say(f"would apply {m.label}" + ("" if m.transactional else " (no transaction)"))
                return todo
            for m in todo:
                self._apply(recorder, m)
        return todo

    def _apply(self, recorder: Recorder, m: Migration) -> None:
        try:
            ms = run_file(recorder.conn, m, m.up, done=lambda ms: recorder.record_applied(m, ms),
                          failed=lambda ms, error: recorder.record_applied(m, ms, error))
        except StatementFailed as failed:
            advice = "" if m.transactional else (
                "; it runs outside a transaction, so statements before that line stay applied: fix the database by "
                f"hand, then run `luminar-db migrate --mark-resolved {m.version}` (or undo it by hand and run "
                f"`luminar-db migrate --retry {m.version}`)")
            raise MigrationError(failed.message + advice) from failed.__cause__
        self._say(f"applied {m.label} ({ms} ms)")

    def rollback(self, *, allow_production: bool = False) -> Migration:
        """Undo the most recently applied migration with its down section and delete its record, in one transaction.

        Raises ``MigrationError`` in the ``production`` environment unless ``allow_production``, when nothing is
        applied, when that migration failed, changed, has no file or no ``-- migrate:down`` section, or when its
        down section fails (the record then stays; a no-transaction file is then marked failed).
        """
        if self.environment == "production" and not allow_production:
            raise MigrationError("rollback refused: the environment is production; pass --allow-production if you "
                                 "really mean to undo a migration there")
        by_version = {m.version: m for m in self.discover()}
        with self._connect() as conn:
            recorder = self._recorder(conn)
            recorder.lock(self.lock_timeout)
            r = recorder.last_applied()
            if r is None:
                raise MigrationError("nothing to roll back: no migration is applied")
            m = by_version.get(r.version)
            if r.dirty:
                raise MigrationError(failed_message(r))
            if m is None:
                raise MigrationError(f"cannot roll back {r.label}: its file is missing from {self.directory}")
            if m.checksum != r.checksum:
                raise MigrationError(f"cannot roll back {m.path.name}: it was edited since it was applied; restore "
                                     f"it, or accept it with `luminar-db migrate --accept-checksum {m.version}`")
            if m.down is None:
                raise MigrationError(f"cannot roll back {m.path.name}: it has no '-- migrate:down' section; add one "
                                     "that undoes its up section, or undo it by hand")
            try:
                ms = run_file(conn, m, m.down, done=lambda ms: recorder.record_unapplied(m.version),
                              failed=lambda ms, error: recorder.mark_failed(m.version, f"rollback: {error}"))
            except StatementFailed as failed:
                raise MigrationError(f"rollback of {failed.message}") from failed.__cause__
        self._say(f"rolled back {m.label} ({ms} ms)")
        return m


def migrate_database(conninfo: str | Settings, directory: Path | str | None = None, **kwargs) -> list[Migration]:
    """Apply every pending migration of ``directory`` (default ``DEFAULT_DIR``) and return those applied.

    ``kwargs`` go to ``Migrator`` (lock_timeout, environment, applied_by, out) or to ``Migrator.migrate``
    (target, dry_run, allow_out_of_order, ...). Raises like ``Migrator.migrate``.
    Example: ``migrate_database("host=localhost dbname=luminar_test", "migrations")``.
    """
    init = {k: kwargs.pop(k) for k in ("lock_timeout", "environment", "applied_by", "out") if k in kwargs}
    return Migrator(conninfo, directory if directory is not None else DEFAULT_DIR, **init).migrate(**kwargs)
