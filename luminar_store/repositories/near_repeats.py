"""Near-repeat flags (``near_repeats``, written by ``luminar_flag_near_repeats``): reading them, and flagging.

Example::

    flags = NearRepeatRepository(conn)
    run = await flags.flag(30, distance_m=200, hours=168)      # the owner's
    for n in await flags.recent(7): print(n.event_type, round(n.distance_m), n.hours_after)
"""

from __future__ import annotations

from luminar_store import validation as v
from luminar_store.analysis.near_repeats import FLAG_NEAR_REPEATS, NearRepeatRun, near_repeat_parameters
from luminar_store.limits import (
    DEFAULT_ANALYSIS_DAYS,
    DEFAULT_NEAR_REPEAT_HOURS,
    DEFAULT_NEAR_REPEAT_M,
    DEFAULT_SAME_ADDRESS_M,
    MAX_DAYS,
    MAX_LIMIT,
)
from luminar_store.models import NearRepeat
from luminar_store.repositories._base import Repository

__all__ = ["NearRepeatRepository", "RECENT_NEAR_REPEATS"]

# name: recent_near_repeats
# One row per flagged incident (its representative's row: event_id = incident_event_id) whose event happened within
# the last %(days)s days (occurred_at, the event's time as the run saw it), newest first (idx_near_repeats_recent),
# with the earlier incident's point and time.
RECENT_NEAR_REPEATS = """
SELECT n.event_id, n.earlier_event_id, e.event_type, e.latitude, e.longitude, e."timestamp",
       a.latitude AS earlier_latitude, a.longitude AS earlier_longitude, a."timestamp" AS earlier_timestamp,
       n.distance_m, n.hours_after, n.parameters, n.computed_at
  FROM near_repeats AS n
  JOIN crime_events AS e ON e.event_id = n.event_id
  JOIN crime_events AS a ON a.event_id = n.earlier_event_id
 WHERE n.event_id = n.incident_event_id
   AND n.occurred_at >= now() - make_interval(days => %(days)s)
 ORDER BY n.occurred_at DESC, n.event_id
 LIMIT %(limit)s
"""


class NearRepeatRepository(Repository):
    """Reads ``near_repeats``, and runs the flagging, on one async connection (or a connection source)."""

    async def recent(self, days: int = 7, *, limit: int = 100) -> list[NearRepeat]:
        """The near repeats among the incidents of the last ``days`` days (1..3650), newest first, one per incident.

        Raises ``ValidationError`` (``days``, ``limit``) before any SQL.

        Example: ``flags = await NearRepeatRepository(conn).recent(7)``
        """
        params = {"days": v.integer("days", days, minimum=1, maximum=MAX_DAYS),
                  "limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT)}
        return await self._all(RECENT_NEAR_REPEATS, params, NearRepeat)

    async def flag(self, days: int = DEFAULT_ANALYSIS_DAYS, *, distance_m: float = DEFAULT_NEAR_REPEAT_M,
                   hours: float = DEFAULT_NEAR_REPEAT_HOURS,
                   same_address_m: float = DEFAULT_SAME_ADDRESS_M) -> NearRepeatRun:
        """Flag the near repeats among the incidents of the last ``days`` days (``luminar_flag_near_repeats``;
        ``luminar_store.analysis.near_repeats``). The owner's: a node login is refused.

        Raises ``ValidationError`` (``days``, ``distance_m``, ``hours``, ``same_address_m``) before any SQL;
        ``PermissionDeniedError`` for a login that may not run it.

        Example: ``run = await NearRepeatRepository(conn).flag(30)``
        """
        params = near_repeat_parameters(days, distance_m, hours, same_address_m)
        async with self._connection() as conn:
            cur = await conn.execute(FLAG_NEAR_REPEATS, params)
            row = await cur.fetchone()
        assert row is not None  # the function returns one row
        return NearRepeatRun(*row)
