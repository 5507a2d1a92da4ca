"""Where a crime event is and when it happened, when the miner did not say: its source reports.

A miner's event names its reports by our ``report_id`` (``related_reports``) or by the reports' own ids
(``source_reports``, e.g. ``LMR_20250907_1A2B3C4D``, the ids the validators gave them). Before such an event is
written, ``place`` reads the reports it names (one query for a whole batch) and returns, per event, a ``Placement``:

- ``related_reports``: every report as our ``report_id`` (the reports' own ids resolved; an id no stored report has
  is a ``NotFoundError`` naming it and the field);
- the point: the event's own (``location_source`` ``event``); else its reports' (one report: its point; several:
  their centroid, ``luminar_store.geo.centroid``; ``source_reports``); else none: the event is stored *unlocated*
  (``latitude``/``longitude``/``location_source`` NULL), left out of every spatial query until it is located;
- the time: the event's own (``timestamp_source`` ``event``); else the earliest report's (``source_reports``); else
  ``None``, which the writer turns into the time the event is stored (the transaction's ``now()``, ``stored``).

Events that need none of this (their own point and time, UUID references) are written without a placement: the
writer's row then takes their own point and time (``crime_events._row``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from luminar_store.errors import NotFoundError
from luminar_store.geo import centroid
from luminar_store.models import CrimeEvent

__all__ = ["Placement", "place"]

# The reports named by a batch of events, by either id.
SOURCE_REPORTS = """
SELECT report_id, external_id, latitude, longitude, "timestamp"
  FROM raw_incident_reports
 WHERE external_id = ANY(%(external_ids)s) OR report_id = ANY(%(report_ids)s)
"""


@dataclass(frozen=True, slots=True)
class Placement:
    """What the writer stores for an event's reports, point and time (see the module's docstring)."""

    related_reports: tuple[uuid.UUID, ...]
    latitude: float | None
    longitude: float | None
    location_source: str | None
    timestamp: datetime | None
    timestamp_source: str


async def place(conn: psycopg.AsyncConnection, events: Sequence[CrimeEvent],
                where: Sequence[str] | None = None) -> list[Placement]:
    """The placements of ``events``, reading the reports they name in one query.

    ``where[i]`` prefixes the field named by an error about ``events[i]`` (``events[3].``). Raises
    ``NotFoundError`` for a report id no stored report has (``source_reports: no stored report has the id
    'LMR_...'``).
    """
    external_ids = sorted({sid for e in events for sid in e.source_reports})
    report_ids = {rid for e in events for rid in e.related_reports}
    for sid in external_ids:  # a source's id may be one of our UUIDs, named the reference's way
        try:
            report_ids.add(uuid.UUID(sid))
        except ValueError:
            pass
    reports: dict[object, tuple[uuid.UUID, float, float, datetime]] = {}
    if external_ids or report_ids:
        cur = await conn.execute(SOURCE_REPORTS, {"external_ids": external_ids, "report_ids": sorted(report_ids)})
        for report_id, external_id, lat, lng, ts in await cur.fetchall():
            reports[report_id] = reports[external_id] = (report_id, lat, lng, ts)
    placements = []
    for i, event in enumerate(events):
        prefix = where[i] if where else ""
        named: dict[uuid.UUID, tuple[uuid.UUID, float, float, datetime]] = {}
        for field, ids in (("related_reports", event.related_reports), ("source_reports", event.source_reports)):
            for j, rid in enumerate(ids):
                found = reports.get(rid)
                if found is None and field == "source_reports":
                    try:
                        found = reports.get(uuid.UUID(rid))
                    except ValueError:
                        pass
                if found is None:
                    raise NotFoundError(f"{prefix}{field}[{j}]: no stored report has the id {str(rid)!r}")
                named.setdefault(found[0], found)
        placements.append(_placed(event, list(named.values())))
    return placements


def _placed(event: CrimeEvent, reports: list[tuple[uuid.UUID, float, float, datetime]]) -> Placement:
    related = tuple(r[0] for r in reports)
    if event.geotag is not None:
        lat, lng, location_source = event.latitude, event.longitude, "event"
    elif reports:
        lat, lng = centroid([(r[1], r[2]) for r in reports])
        location_source = "source_reports"
    else:
        lat = lng = location_source = None
    if event.timestamp is not None:
        ts, timestamp_source = event.timestamp, "event"
    elif reports:
        ts, timestamp_source = min(r[3] for r in reports), "source_reports"
    else:
        ts, timestamp_source = None, "stored"
    return Placement(related, lat, lng, location_source, ts, timestamp_source)
