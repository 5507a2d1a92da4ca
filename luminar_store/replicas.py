"""Read replicas: how far one is behind the primary, and what monitoring is told about each.

Lag is measured by WAL positions, in bytes: the primary's ``pg_current_wal_insert_lsn()`` (everything its
committed transactions wrote, also what a ``synchronous_commit = off`` commit left in the WAL buffers, which
``pg_current_wal_lsn()`` does not count yet) against the replica's ``pg_last_wal_replay_lsn()``. A replica that has
replayed everything the primary wrote is 0 bytes behind however long the primary has been idle
(``pg_last_xact_replay_timestamp()`` alone would call an idle primary "lag"); the seconds since the replica's last
replayed transaction are shown only while it is behind by some bytes.

A replica more than ``LUMINAR_DB_REPLICA_MAX_LAG`` bytes behind is skipped by reads until it catches up. Each replica
is measured at most every ``LAG_CHECK_EVERY`` seconds (by the read that finds the measurement stale; reads meanwhile
use the cached one). ``LagTracker`` logs one line per change (behind the limit / caught up), never per read.

Example::

    >>> lag = Lag.from_row((True, 0, 120.0))
    >>> lag.bytes, lag.seconds
    (0, 0.0)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from luminar_store.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from luminar_store.config import Settings

__all__ = ["DEFAULT_REPLICA_COOLDOWN", "DEFAULT_REPLICA_MAX_LAG", "LAG_CHECK_EVERY", "PRIMARY_WAL_POSITION",
           "REPLICA_LAG", "Lag", "LagTracker", "ReplicaStatus", "ReplicaTarget", "replica_target"]

log = logging.getLogger(__name__)

#: Seconds a replica that refused or timed out is skipped before one read probes it again
#: (``LUMINAR_DB_REPLICA_COOLDOWN``).
DEFAULT_REPLICA_COOLDOWN = 30.0
#: Bytes of WAL a replica may be behind the primary and still serve reads (``LUMINAR_DB_REPLICA_MAX_LAG``): one WAL
#: segment, 16 MiB.
DEFAULT_REPLICA_MAX_LAG = 16 * 1024 * 1024
#: Seconds a lag measurement is reused before a read measures again.
LAG_CHECK_EVERY = 2.0

# The primary's WAL insert position (as text: the replica's query casts it back to pg_lsn): with synchronous_commit
# off, a commit returns before its WAL is written out, and the write position would call a replica that has not
# received it "not behind".
PRIMARY_WAL_POSITION = "SELECT pg_current_wal_insert_lsn()::text"

# On the replica: whether it is a standby, the bytes it has yet to replay of what the primary had written (never
# negative: it may have replayed more since the primary was asked), and the seconds since its last replayed
# transaction. A server that is not a standby has no replay position: 0 bytes behind.
REPLICA_LAG = """
SELECT pg_is_in_recovery(),
       greatest(pg_wal_lsn_diff(%(primary_lsn)s::pg_lsn, pg_last_wal_replay_lsn()), 0)::bigint,
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
"""


@dataclass(frozen=True)
class ReplicaTarget:
    """How to reach replica ``index`` of the settings: its pool name, how messages name it (host, port, database;
    never the password) and the conninfo to connect with (password included: never print it)."""

    index: int
    label: str
    where: str
    conninfo: str = field(repr=False)


def replica_target(settings: Settings, index: int, url: str) -> ReplicaTarget:
    """Replica ``index`` (from 0) of ``settings.replica_urls``: what its URL leaves out (role, password, TLS) is
    taken from the primary's settings. Raises ``DatabaseUnavailableError`` for a URL that is not a connection string
    (never echoing it)."""
    try:
        given = conninfo_to_dict(url)
    except Exception:  # psycopg.ProgrammingError: its message may echo the URL
        raise DatabaseUnavailableError(
            f"LUMINAR_DB_REPLICA_URLS entry {index + 1} is not a valid connection string; "
            "use postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        ) from None
    s = settings
    where = (f"replica {index + 1} (host {given.get('host', s.host)}, port {given.get('port', s.port)}, "
             f"database {given.get('dbname', s.name)})")
    extra = {k: v for k, v in s.connect_kwargs().items() if k not in given and k not in ("host", "port", "dbname")}
    extra["application_name"] = f"luminar_store_replica{index}"
    return ReplicaTarget(index, f"luminar-replica{index}", where, make_conninfo(url, **extra))


@dataclass(frozen=True)
class Lag:
    """One measurement: bytes of WAL behind the primary, and seconds behind (0.0 while 0 bytes behind)."""

    bytes: int
    seconds: float
    standby: bool

    @classmethod
    def from_row(cls, row: tuple[object, ...]) -> Lag:
        """From a row of ``REPLICA_LAG``."""
        standby, behind, since_replay = row
        behind_bytes = int(behind or 0)  # type: ignore[call-overload]
        seconds = max(float(since_replay or 0.0), 0.0) if behind_bytes else 0.0  # type: ignore[arg-type]
        return cls(behind_bytes, seconds, bool(standby))


class LagTracker:
    """The last lag measurement of one replica, its age, and whether reads skip the replica for it.

    ``due()`` says when a read should measure (none yet, or older than ``LAG_CHECK_EVERY``, and nobody measuring);
    ``record()`` stores a measurement and logs once when the replica goes over ``max_lag`` or comes back under it.
    """

    def __init__(self, where: str, max_lag: int, *, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger | None = None) -> None:
        self.where = where
        self.max_lag = max_lag
        self.lag: Lag | None = None
        self.measuring = False
        self._clock = clock
        self._measured_at = float("-inf")
        self._log = logger or log

    @property
    def lagging(self) -> bool:
        """True while the last measurement was over the limit."""
        return self.lag is not None and self.lag.bytes > self.max_lag

    def age(self) -> float | None:
        """Seconds since the last measurement (``None`` before the first)."""
        return None if self.lag is None else self._clock() - self._measured_at

    def due(self) -> bool:
        """True when a read should measure now: no fresh measurement and no measurement under way."""
        return not self.measuring and self._clock() - self._measured_at >= LAG_CHECK_EVERY

    def skips(self) -> bool:
        """True when reads skip the replica: over the limit, and the measurement that said so is still fresh
        (a stale one lets a read through to measure again)."""
        return self.lagging and not self.due()

    def record(self, lag: Lag) -> bool:
        """Store ``lag``; returns True (and logs one line) when it changed whether reads skip the replica."""
        was = self.lagging
        self.lag, self._measured_at = lag, self._clock()
        if self.lagging == was:
            return False
        if self.lagging:
            self._log.warning("read replica %s is %d bytes (%.1f s) behind the primary, over the limit of %d "
                              "(LUMINAR_DB_REPLICA_MAX_LAG): reads go elsewhere until it catches up",
                              self.where, lag.bytes, lag.seconds, self.max_lag,
                              extra={"event": "replica_skipped", "where": self.where, "lag_bytes": lag.bytes})
        else:
            self._log.info("read replica %s caught up (%d bytes behind): reads use it again", self.where, lag.bytes,
                           extra={"event": "replica_back", "where": self.where, "lag_bytes": lag.bytes})
        return True


@dataclass(frozen=True)
class ReplicaStatus:
    """What ``Database.replica_status()`` says of one replica (asks no server; never a password).

    ``health``: ``up``, ``cooling down`` (refused or timed out; skipped for ``retry_in`` more seconds) or ``down``
    (the cool-down is over: the next read probes it). ``since``: when it went down (UTC; ``None`` while up).
    ``lag_bytes`` / ``lag_seconds`` / ``lag_age`` (seconds since measured): ``None`` before the first measurement.
    ``in_use``: whether reads go to it now.
    """

    name: str
    where: str
    health: str
    since: datetime | None
    retry_in: float
    reason: str | None
    lag_bytes: int | None
    lag_seconds: float | None
    lag_age: float | None
    in_use: bool

    def line(self) -> str:
        """One line for people: health, lag and whether reads use it."""
        if self.health == "up":
            health = "up"
        else:
            health = f"{self.health} since {self.since:%Y-%m-%d %H:%M:%S %Z}" if self.since else self.health
            if self.retry_in:
                health += f" (next probe in {self.retry_in:.0f} s)"
        if self.lag_bytes is None:
            lag = "lag not measured yet"
        else:
            lag = f"lag {self.lag_bytes} bytes, {self.lag_seconds:.1f} s"
            if self.lag_age is not None:
                lag += f" (measured {self.lag_age:.0f} s ago)"
        use = "reads use it" if self.in_use else "reads skip it"
        return f"{self.where}: {health}; {lag}; {use}"
