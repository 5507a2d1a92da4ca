"""Whether a database server answers: one small tracker per server (the primary, each read replica).

The pools tell a ``ServerState`` what their probes found (``mark_down(message)``, ``mark_up()``); the tracker logs
**once per change of state**, not once per call: a WARNING naming the server and the reason when it is lost, an INFO
saying how long it was down when it answers again. It also remembers the last failure for ``retry_after`` seconds,
so that callers arriving meanwhile fail at once with that failure instead of each opening a connection to a server
that just refused one. ``status()`` is the public view (up or down, since when, why), for health checks and
monitoring.

The tracker knows nothing of psycopg or pools: whatever can tell "answered" from "did not" can drive it.

Example::

    >>> state = ServerState("host db1, port 5432, database luminar", retry_after=0.25)
    >>> state.mark_down("cannot reach the database (host db1, port 5432, database luminar): connection refused")
    True
    >>> state.status().up
    False
    >>> state.mark_up()
    True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = ["ServerState", "ServerStatus"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerStatus:
    """One server's state as last observed: ``up`` or not, ``since`` when (UTC), and while down the ``reason``
    (the message of the last failure: names the server, never a password).

    Example: ``status.up``, ``status.since``, ``status.down_for`` (seconds, 0.0 while up)
    """

    where: str
    up: bool
    since: datetime
    reason: str | None
    down_for: float


class ServerState:
    """Up or down for one server, with the time of the change; logs each change once.

    A new tracker assumes the server is up (nothing has failed yet). ``mark_down`` and ``mark_up`` return ``True``
    when they changed the state (and logged it), ``False`` when the state was already that.
    """

    def __init__(self, where: str, *, retry_after: float, logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``where``: how log lines name the server (host, port, database; never a password). ``retry_after``:
        seconds a failure stays fresh (``recent_failure``). ``clock``: monotonic seconds (tests pass their own)."""
        self.where = where
        self.retry_after = retry_after
        self._log = logger or log
        self._clock = clock
        self._up = True
        self._since = clock()
        self._since_utc = datetime.now(timezone.utc)
        self._reason: str | None = None
        self._failed_at = float("-inf")

    def __repr__(self) -> str:
        return f"<ServerState {self.where}: {'up' if self._up else 'down'}>"

    @property
    def up(self) -> bool:
        """``True`` unless the last observation was a failure."""
        return self._up

    def status(self) -> ServerStatus:
        """The state now: up or down, since when, why.

        Example::

            status = state.status()
            if not status.up:
                print(f"down since {status.since:%H:%M:%S} ({status.down_for:.0f} s): {status.reason}")
        """
        down_for = 0.0 if self._up else self._clock() - self._since
        return ServerStatus(self.where, self._up, self._since_utc, self._reason, down_for)

    def mark_down(self, message: str) -> bool:
        """Record a failed attempt (``message``: what callers are told). Logs a WARNING when the server was up."""
        self._failed_at = self._clock()
        self._reason = message
        if not self._up:
            return False
        self._up, self._since, self._since_utc = False, self._failed_at, datetime.now(timezone.utc)
        self._log.warning("lost the database server: %s", message,
                          extra={"event": "server_lost", "where": self.where})
        return True

    def mark_up(self) -> bool:
        """Record a successful attempt. Logs an INFO with the time it was down when it was down."""
        if self._up:
            return False
        down_for = self._clock() - self._since
        self._up, self._since, self._since_utc = True, self._clock(), datetime.now(timezone.utc)
        self._reason, self._failed_at = None, float("-inf")
        self._log.info("the database server is back after %.1f s down (%s)", down_for, self.where,
                       extra={"event": "server_back", "where": self.where, "down_seconds": round(down_for, 1)})
        return True

    def retry_in(self) -> float:
        """Seconds until a failure stops being fresh (0.0 when up or when it is time to try again)."""
        if self._up:
            return 0.0
        return max(self.retry_after - (self._clock() - self._failed_at), 0.0)

    def recent_failure(self) -> str | None:
        """The last failure's message when the server is down and that failure is less than ``retry_after``
        seconds old (callers fail with it at once), else ``None`` (time to try again)."""
        if self._up or self._clock() - self._failed_at >= self.retry_after:
            return None
        return self._reason

