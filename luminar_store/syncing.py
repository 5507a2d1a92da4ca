"""The spec's ``sync_manager``: keep this machine's database current with central, in real time where possible.

``await sync_manager.start_real_time_sync()`` subscribes the local database to central's changes by logical
replication (``luminar_store.ops.realtime``) when it can be set up: central has ``wal_level = logical`` and a
replicator login, and a superuser of the local server is known (``LUMINAR_DB_ADMIN_URL``, or this machine's local
cluster). Where it cannot (a node without those rights: the usual case), the same call runs bounded pulls
(``luminar_store.ops.sync``, with their watermarks) at an interval in a background task, until ``stop()``. Either
way one log line says which, and why.

Central is ``LUMINAR_SYNC_SOURCE_URL`` (or ``source_url=``; checked against production's TLS minimum), else the
production settings; the local database is the settings' (written as its owner), never production.

Example::

    from luminar_store import sync_manager

    mode = await sync_manager.start_real_time_sync()   # "logical" or "pull"
    ...
    await sync_manager.stop()
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from luminar_store.config import Settings, load_settings
from luminar_store.errors import LuminarError, OperationError

__all__ = ["SyncManager", "sync_manager", "DEFAULT_PULL_INTERVAL"]

log = logging.getLogger(__name__)

#: Seconds between two pulls when logical replication cannot be used.
DEFAULT_PULL_INTERVAL = 60.0

Pull = Callable[[Settings, Settings, "datetime | None"], Any]


def _default_pull(local: Settings, source: Settings, since: datetime | None) -> Any:
    """One bounded pull from central (``source``) into ``local``: since ``since`` on the first, from the
    watermarks on after (``luminar_store.ops.sync.sync``)."""
    from luminar_store.ops.sync import sync

    return sync(source, local, since=since)


class SyncManager:
    """Keeps the local database current with central: logical replication, else pulls at an interval.

    ``mode`` is ``None`` before a start, then ``"logical"`` or ``"pull"``; ``last_error`` the last pull's failure
    (pulls go on after one; the next retries from the watermarks)."""

    def __init__(self, settings: Settings | None = None, *, pull: Pull | None = None) -> None:
        self._settings = settings
        self._pull = pull or _default_pull
        self._task: asyncio.Task[None] | None = None
        self._local: Settings | None = None
        self._admin: str | None = None
        self.mode: str | None = None
        self.pulls = 0
        self.last_error: str | None = None

    async def start_real_time_sync(self, *, source_url: str | None = None, admin_url: str | None = None,
                                   interval: float = DEFAULT_PULL_INTERVAL, hours: int = 24,
                                   source_env: str = "production") -> str:
        """Start keeping the local database current; returns ``"logical"`` or ``"pull"``. Pulls copy the last
        ``hours`` first when the copy has never been synced, then from the watermarks on. ``source_env``: the
        environment whose TLS minimum central's URL must meet (production). Idempotent while running.
        Raises ``ConfigError`` when central is not named (``LUMINAR_SYNC_SOURCE_URL``, or the production settings)
        or its URL is below the TLS minimum, ``OperationError`` for a production target."""
        if self.mode is not None:
            return self.mode
        from luminar_store.ops import compose
        from luminar_store.ops.sync import SOURCE_URL_VARIABLE, resolve_source

        nodes = self._settings or load_settings()
        local = nodes.as_owner()
        if local.rules.production:
            raise OperationError(f"{local.target()} is production: a central database is never a copy")
        environ = dict(os.environ, **({SOURCE_URL_VARIABLE: source_url} if source_url else {}))
        source = await asyncio.to_thread(resolve_source, source_env, environ=environ)
        admin = admin_url or os.environ.get("LUMINAR_DB_ADMIN_URL") or \
            await asyncio.to_thread(compose.local_admin_url, nodes)
        self._local, self._admin = local, admin
        if admin:
            try:
                await asyncio.to_thread(self._follow, local, source.conninfo(), admin)
                self.mode = "logical"
                log.info("following central by logical replication into %s", local.target())
                return self.mode
            except OperationError as exc:
                reason = str(exc)
        else:
            reason = "no superuser of the local server is known (LUMINAR_DB_ADMIN_URL)"
        log.info("logical replication cannot be used (%s): pulling from central every %g s instead", reason,
                 interval)
        self.mode = "pull"
        self._task = asyncio.create_task(self._pull_every(local, source, interval, hours))
        return self.mode

    @staticmethod
    def _follow(local: Settings, source: str, admin: str) -> None:
        from luminar_store.ops import realtime

        if not realtime.set_enabled(local, True, admin_url=admin):
            realtime.subscribe(local, source, admin_url=admin)

    async def _pull_every(self, local: Settings, source: Settings, interval: float, hours: int) -> None:
        while True:
            # The first pull of a copy never synced copies the window; after one, the watermarks say what is new.
            since = None if self.pulls else datetime.now(timezone.utc) - timedelta(hours=hours)
            try:
                await asyncio.to_thread(self._pull, local, source, since)
                self.pulls += 1
                self.last_error = None
            except LuminarError as exc:
                if self.last_error is None:
                    log.warning("a pull from central failed (%s); trying again every %g s", exc, interval)
                self.last_error = str(exc)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Stop: the pulls end; a subscription is stopped (what was copied stays, a start goes on from there)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.mode == "logical" and self._local is not None and self._admin:
            from luminar_store.ops import realtime

            await asyncio.to_thread(realtime.set_enabled, self._local, False, admin_url=self._admin)
        self.mode = None


#: The spec's ``sync_manager`` (``from luminar_store import sync_manager``).
sync_manager = SyncManager()
