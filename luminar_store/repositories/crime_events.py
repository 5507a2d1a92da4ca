"""Crime events: store one or many (COPY), recent, within a radius, by miner, verification, hotspots, geocoding.

Locations are written as ``latitude``/``longitude``; the table generates ``geotag`` and the 0.01° grid cell
``cell_row``/``cell_col`` (``floor(latitude / 0.01)``, ``floor(longitude / 0.01)``) from them. A radius query computes
a bounding box conservatively from the metres, then either reads the newest events of each grid cell covering the box
(``idx_events_cell_time``, merged; up to ``MAX_GRID_CELLS`` cells) or, for larger boxes and near the poles, every
event inside the box through the GiST index on ``geotag``; both refine with the exact geodesic
``ST_DWithin(geography, geography, metres)``. A geography cast of the column alone would not use an index.
Hotspots count incidents, not events (the schema's ``crime_incidents``, kept current by triggers: events sharing
their lowest related report count once) on square equal-area cells in metres, the same cells for the listing
(``hotspots``) and the Getis-Ord Gi* analysis (``significant_hotspots``, ``luminar_gistar``).

An *unlocated* event (a miner's text-flow event: ``latitude``/``longitude``, ``location_source`` and so ``geotag``,
``cell_row``/``cell_col`` NULL) is counted by the totals and listed by recent, by miner and by report, but never by a
spatial query: the radius queries match cells or the GiST index (NULL matches neither) and the hotspots keep
located events only. ``unlocated()`` is the geocoding queue, ``locate()`` gives an event its point.

Example::

    events = CrimeEventRepository(conn)
    event_id = await events.store(event, miner_uid=123)
    near = await events.within_radius(40.7128, -74.0060, 1000, days=7)
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from itertools import islice
from typing import Any

import psycopg
from psycopg import errors as pg
from psycopg.types.json import Jsonb

from luminar_store import validation as v
from luminar_store.errors import (
    ConflictError,
    DatabaseUnavailableError,
    LuminarError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from luminar_store.geo import search_boxes
from luminar_store.limits import (
    CONFIDENCES,
    DEFAULT_CELL_M,
    GRID_DEGREES,
    GROUP_COMMIT_MAX_CALLS,
    MAX_CELL_M,
    MAX_DAYS,
    MAX_GRID_CELLS,
    MAX_HOURS,
    MAX_LIMIT,
    MAX_RADIUS_M,
    MIN_CELL_M,
)
from luminar_store.models import VERIFICATION_STATUSES, CrimeEvent, CrimeEventRecord, Hotspot, SignificantHotspot
from luminar_store.repositories._base import Repository, record_row
from luminar_store.repositories._errors import translate, translated
from luminar_store.repositories._sources import Placement, place

__all__ = ["CrimeEventRepository", "EVENT_COLUMNS", "MAX_HOURS", "MAX_DAYS", "MAX_LIMIT", "MAX_RADIUS_M",
           "GRID_DEGREES", "MAX_GRID_CELLS", "search_boxes", "grid_cell_count", "window_hours", "record_row",
           "hotspot_query", "HOTSPOT_ORDER", "WRITE_COLUMNS", "significant_hotspot_query", "PreparedEvent",
           "insert_events_query"]

# "No time bound" is a window of 1000 years: one SQL text (and one index-friendly condition) for both cases.
_ALL_TIME_HOURS = 24 * 365 * 1000

# name: event_columns
# The columns of a CrimeEventRecord, in its field order (record_row builds records from them by position). Every
# query returning events selects exactly these, then optionally distance_m.
EVENT_COLUMNS = """event_id, miner_uid, event_type, title, summary, latitude, longitude, "timestamp", severity_level,
       confidence_score, related_reports, cluster_id, verification_status, validator_uid, verification_score,
       verified_at, risk_score::float8 AS risk_score, metadata, created_at, updated_at, location_text, time_info,
       entities, time_end, timestamp_source, location_source, request_id"""

# name: insert_event
# Stores one event; the writer may choose event_id (else the database draws one). Returns event_id, or no row when
# the event is already stored: its idempotency_key is known (a retry: FIND_EVENT_BY_KEY then returns the first
# event_id) or its event_id is another writer's (a conflict). An event without a time of its own or of its reports
# is stamped with the time it is stored (the transaction's now(), timestamp_source 'stored'); an unlocated one has
# NULL latitude, longitude and location_source. Written as its parts, which INSERT_EVENTS repeats.
_INSERT_INTO = """
INSERT INTO crime_events
    (event_id, miner_uid, event_type, title, summary, latitude, longitude, "timestamp", severity_level,
     confidence_score, related_reports, cluster_id, verification_status, risk_score, metadata, location_text,
     time_info, entities, time_end, timestamp_source, location_source, request_id, idempotency_key)
VALUES """
_EVENT_VALUES = """(coalesce(%(event_id)s, gen_random_uuid()), %(miner_uid)s, %(event_type)s, %(title)s, %(summary)s,
        %(latitude)s, %(longitude)s, coalesce(%(timestamp)s, now()), %(severity_level)s, %(confidence_score)s,
        %(related_reports)s, %(cluster_id)s, %(verification_status)s, %(risk_score)s, %(metadata)s,
        %(location_text)s, %(time_info)s, %(entities)s, %(time_end)s, %(timestamp_source)s, %(location_source)s,
        %(request_id)s, %(idempotency_key)s)"""
INSERT_EVENT = _INSERT_INTO + _EVENT_VALUES + """
ON CONFLICT DO NOTHING
RETURNING event_id
"""

# name: insert_events
# INSERT_EVENT for the events of several concurrent callers in one statement (one implicit transaction: all stored
# or, when one is refused, none): INSERT_EVENT's row once per event, its placeholders numbered by the event's
# position (%(miner_uid_3)s). Returns idempotency_key and event_id of each event stored; an event stored before
# (its key known: FIND_EVENTS_BY_KEYS returns its first event_id; or its event_id another writer's) has no row, and
# neither has a repeat of a key earlier in the same statement.
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@functools.lru_cache(maxsize=GROUP_COMMIT_MAX_CALLS)
def insert_events_query(n: int) -> str:
    """INSERT_EVENTS for ``n`` events (1..GROUP_COMMIT_MAX_CALLS), the n-th bound as ``{column}_{n}``."""
    rows = ",\n       ".join(_PLACEHOLDER.sub(rf"%(\1_{i})s", _EVENT_VALUES) for i in range(n))
    return _INSERT_INTO + rows + """
ON CONFLICT DO NOTHING
RETURNING idempotency_key, event_id
"""


# name: find_event_by_key
# The event already stored under an idempotency key (idx_events_idempotency_key).
FIND_EVENT_BY_KEY = "SELECT event_id FROM crime_events WHERE idempotency_key = %(key)s"
@functools.lru_cache(maxsize=GROUP_COMMIT_MAX_CALLS)
def _numbered_columns(i: int) -> tuple[str, ...]:
    """The parameter names of the ``i``-th event of INSERT_EVENTS."""
    return tuple(f"{column}_{i}" for column in WRITE_COLUMNS)


# name: find_events_by_keys
# The same for several keys at once: idempotency_key and event_id of each stored.
FIND_EVENTS_BY_KEYS = ("SELECT idempotency_key, event_id FROM crime_events "
                       "WHERE idempotency_key = ANY(%(keys)s::uuid[])")

# name: known_keys
# Which of a chunk's idempotency keys are stored already (committed, or written earlier in this transaction).
KNOWN_KEYS = "SELECT idempotency_key FROM crime_events WHERE idempotency_key = ANY(%(keys)s::uuid[])"

# name: copy_events
# The bulk path: binary COPY straight into the table, a chunk at a time, of the rows whose idempotency keys are not
# stored yet (KNOWN_KEYS before each chunk; event ids drawn in Python, so every row has one; a row stamped 'stored'
# carries the transaction's now(), read once: TRANSACTION_NOW).
COPY_EVENTS = """
COPY crime_events
    (event_id, miner_uid, event_type, title, summary, latitude, longitude, "timestamp", severity_level,
     confidence_score, related_reports, cluster_id, verification_status, risk_score, metadata, location_text,
     time_info, entities, time_end, timestamp_source, location_source, request_id, idempotency_key)
FROM STDIN (FORMAT BINARY)
"""
COPY_TYPES = ["uuid", "int4", "text", "text", "text", "float8", "float8", "timestamptz", "int2", "float8",
              "uuid[]", "uuid", "text", "numeric", "jsonb", "text", "text", "jsonb", "timestamptz", "text", "text",
              "text", "uuid"]

# name: row_security_active / stage_events / copy_staged_events / move_staged_events
# A node's login writes under row-level security, where PostgreSQL refuses COPY into the table: its bulk path
# copies each chunk into a session-private staging table and moves it with one INSERT, which the policies check
# (once a statement). The owner, not under row security, copies straight into the table.
ROW_SECURITY_ACTIVE = "SELECT row_security_active('crime_events')"
STAGE_EVENTS = """
CREATE TEMP TABLE IF NOT EXISTS luminar_incoming_events ON COMMIT DROP AS
SELECT event_id, miner_uid, event_type, title, summary, latitude, longitude, "timestamp", severity_level,
       confidence_score, related_reports, cluster_id, verification_status, risk_score, metadata, location_text,
       time_info, entities, time_end, timestamp_source, location_source, request_id, idempotency_key
  FROM crime_events WITH NO DATA
"""
COPY_STAGED_EVENTS = COPY_EVENTS.replace("COPY crime_events", "COPY luminar_incoming_events")
MOVE_STAGED_EVENTS = """
WITH moved AS (DELETE FROM luminar_incoming_events RETURNING *)
INSERT INTO crime_events
    (event_id, miner_uid, event_type, title, summary, latitude, longitude, "timestamp", severity_level,
     confidence_score, related_reports, cluster_id, verification_status, risk_score, metadata, location_text,
     time_info, entities, time_end, timestamp_source, location_source, request_id, idempotency_key)
SELECT event_id, miner_uid, event_type, title, summary, latitude, longitude, "timestamp", severity_level,
       confidence_score, related_reports, cluster_id, verification_status, risk_score, metadata, location_text,
       time_info, entities, time_end, timestamp_source, location_source, request_id, idempotency_key
  FROM moved
"""
TRANSACTION_NOW = "SELECT now()"

# name: defer_miner_counts / add_verified_events
# The bulk path keeps miner_performance.verified_events with one call a batch rather than the per-row trigger's
# update for every verified event copied (the schema's luminar_add_miner_counts; the migration says why). Both run
# in the batch's transaction (or savepoint): the setting ends with it, and is switched off again with the count.
DEFER_MINER_COUNTS = "SELECT set_config('luminar.defer_miner_counts', 'on', true)"
END_DEFERRED_COUNTS = "SELECT set_config('luminar.defer_miner_counts', 'off', true)"
ADD_VERIFIED_EVENTS = """
SELECT luminar_add_miner_counts(ARRAY[%(miner_uid)s::integer], ARRAY[0], ARRAY[%(verified)s::integer]),
       set_config('luminar.defer_miner_counts', 'off', true)
"""

# name: recent_events
# Events of the last %(hours)s hours, newest first (a backward scan of idx_events_timestamp).
RECENT_EVENTS = """
SELECT {event_columns}
  FROM crime_events
 WHERE "timestamp" >= now() - make_interval(hours => %(hours)s)
 ORDER BY "timestamp" DESC
 LIMIT %(limit)s
""".replace("{event_columns}", EVENT_COLUMNS)

# name: events_within_radius
# Events within %(radius_m)s metres of a point and the last %(hours)s hours, newest first, with their distance, read
# cell by cell: for every 0.01° grid cell covering the envelope(s) (the second one only when the box crosses the
# antimeridian), the newest matches of that cell (idx_events_cell_time, exact geodesic test inside), then the newest
# %(limit)s of them all (an unlocated event has no cell, so it never matches). The cells come from the envelopes with
# the very expression of the generated columns (floor(degrees / 0.01), never decreasing as the degrees grow), so
# every point of the box lies in a listed cell. luminar_events_near (migration 20261130130500) does the reading in
# time slices, newest first, until %(limit)s are found, so the rows read do not grow with the data's density; the
# distance is computed for the rows returned only. Boxes of more than MAX_GRID_CELLS cells (wide radii, near the
# poles) go to EVENTS_WITHIN_BOX instead (same parameters, same result).
EVENTS_WITHIN_RADIUS = """
SELECT {event_columns},
       ST_Distance(geotag::geography, ST_SetSRID(ST_MakePoint(%(longitude)s, %(latitude)s), 4326)::geography)
           AS distance_m
  FROM luminar_events_near(%(latitude)s::float8, %(longitude)s::float8, %(radius_m)s::float8, %(hours)s::integer,
                           %(limit)s::integer, %(ymin)s::float8, %(ymax)s::float8, %(xmin)s::float8,
                           %(xmax)s::float8, %(xmin2)s::float8, %(xmax2)s::float8) AS crime_events
 ORDER BY "timestamp" DESC
""".replace("{event_columns}", EVENT_COLUMNS)

# name: events_within_box
# The same result through the GiST index on geotag: every event inside the envelope(s), of all days, tested exactly
# (an unlocated event's geotag is NULL: never inside).
# For large boxes (wide radii, near the poles) where listing the grid cells would cost more.
EVENTS_WITHIN_BOX = """
SELECT {event_columns}, ST_Distance(geotag::geography, q.point) AS distance_m
  FROM crime_events,
       (SELECT ST_SetSRID(ST_MakePoint(%(longitude)s, %(latitude)s), 4326)::geography AS point) AS q
 WHERE (geotag && ST_MakeEnvelope(%(xmin)s, %(ymin)s, %(xmax)s, %(ymax)s, 4326)
        OR geotag && ST_MakeEnvelope(%(xmin2)s, %(ymin)s, %(xmax2)s, %(ymax)s, 4326))
   AND ST_DWithin(geotag::geography, q.point, %(radius_m)s)
   AND "timestamp" >= now() - make_interval(hours => %(hours)s)
 ORDER BY "timestamp" DESC
 LIMIT %(limit)s
""".replace("{event_columns}", EVENT_COLUMNS)

# name: events_by_miner
# One miner's events, newest first (idx_events_miner_time).
EVENTS_BY_MINER = """
SELECT {event_columns}
  FROM crime_events
 WHERE miner_uid = %(miner_uid)s
 ORDER BY "timestamp" DESC
 LIMIT %(limit)s
""".replace("{event_columns}", EVENT_COLUMNS)

# name: events_by_report
# The events that name a raw report among their related_reports (GIN index on the array), newest first.
EVENTS_BY_REPORT = """
SELECT {event_columns}
  FROM crime_events
 WHERE related_reports @> ARRAY[%(report_id)s]::uuid[]
 ORDER BY "timestamp" DESC
 LIMIT %(limit)s
""".replace("{event_columns}", EVENT_COLUMNS)

# name: get_event
# One event by its event_id.
GET_EVENT = """
SELECT {event_columns}
  FROM crime_events
 WHERE event_id = %(event_id)s
""".replace("{event_columns}", EVENT_COLUMNS)

# name: update_verification
# Records the validators' verdict on an event; verified_at is the time of this update.
UPDATE_VERIFICATION = """
UPDATE crime_events
   SET verification_status = %(status)s, validator_uid = %(validator_uid)s, verification_score = %(score)s,
       verified_at = now()
 WHERE event_id = %(event_id)s
RETURNING {event_columns}
""".replace("{event_columns}", EVENT_COLUMNS)

# name: event_miner
# Whose an event is (to say why an update changed nothing).
EVENT_MINER = "SELECT miner_uid FROM crime_events WHERE event_id = %(event_id)s"

# name: locate_event
# Gives an event its point (an unlocated one, or a correction): geotag and the grid cell follow (generated).
LOCATE_EVENT = """
UPDATE crime_events
   SET latitude = %(latitude)s, longitude = %(longitude)s, location_source = 'geocoded'
 WHERE event_id = %(event_id)s
RETURNING {event_columns}
""".replace("{event_columns}", EVENT_COLUMNS)

# name: unlocated_events
# The geocoding queue: unlocated events, oldest stored first (idx_events_unlocated).
UNLOCATED_EVENTS = """
SELECT {event_columns}
  FROM crime_events
 WHERE latitude IS NULL
 ORDER BY created_at, event_id
 LIMIT %(limit)s
""".replace("{event_columns}", EVENT_COLUMNS)

# name: hotspot_order
# The one order of hotspots, wherever they are listed (the facade, the statistics command): the most incidents first,
# then the most recent last incident, then by position (a stable order for equal cells).
HOTSPOT_ORDER = "incident_count DESC, last_seen DESC, latitude, longitude"

# name: hotspots
# Hotspots: the rows of the schema's crime_hotspots_since(%(days)s, %(cell_m)s, %(min_incidents)s, %(limit)s) (the
# window's incidents by equal-area cell of cell_m metres, the cells of the Gi* analysis; centres rounded to 6
# decimals): cells of at least min_incidents incidents, biggest first, at most limit. Incidents, not events: the
# rows of the schema's crime_incidents (one per incident, at the event consensus chose). Incidents without a
# severity are counted but left out of avg_severity (NULL when none has one), as avg() does.
HOTSPOTS = """
SELECT latitude, longitude, incident_count, avg_severity::float8 AS avg_severity, max_severity, crime_types,
       first_seen, last_seen
  FROM crime_hotspots_since(%(days)s, %(cell_m)s, %(min_incidents)s, %(limit)s)
 ORDER BY {hotspot_order}
""".replace("{hotspot_order}", HOTSPOT_ORDER)

# name: significant_hotspots
# The significant Getis-Ord Gi* cells (confidence >= %(min_confidence)s, at least 90) of the incidents of the last
# %(days)s days on square equal-area cells of %(cell_m)s metres: the schema's luminar_significant_hotspots (the
# last analyze's cells while fresh, else luminar_gistar computed now); the strongest first (largest |z|), then by
# position; at most %(limit)s.
SIGNIFICANT_HOTSPOTS = """
SELECT cell_row, cell_col, latitude, longitude, incidents, neighbours, z, p, q, confidence, gi_bin,
       class AS classification, computed_at
  FROM luminar_significant_hotspots(%(days)s, %(cell_m)s)
 WHERE confidence >= %(min_confidence)s
 ORDER BY abs(z) DESC NULLS LAST, cell_row, cell_col
 LIMIT %(limit)s
"""

# name: gistar_cells
# Every cell of the Gi* grid (min_confidence 0), computed now by the schema's luminar_gistar, in the same order.
GISTAR_CELLS = """
SELECT cell_row, cell_col, latitude, longitude, incidents, neighbours, z, p, q, confidence, gi_bin,
       class AS classification, now() AS computed_at
  FROM luminar_gistar(%(days)s, %(cell_m)s)
 WHERE confidence >= %(min_confidence)s
 ORDER BY abs(z) DESC NULLS LAST, cell_row, cell_col
 LIMIT %(limit)s
"""

# name: count_events
# All events and the verified ones (for database statistics).
COUNT_EVENTS = """
SELECT count(*) AS total, count(*) FILTER (WHERE verification_status = 'verified') AS verified FROM crime_events
"""


def _limit(limit: int) -> int:
    return v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT)


def grid_cell_count(box: dict[str, float | None]) -> int:
    """How many 0.01° grid cells cover the envelope(s) of ``search_boxes``, counted with the cell expression of the
    table (``floor(degrees / 0.01)``)."""
    def cells(low: float, high: float) -> int:
        return math.floor(high / GRID_DEGREES) - math.floor(low / GRID_DEGREES) + 1

    rows = cells(box["ymin"], box["ymax"])  # type: ignore[arg-type]
    cols = cells(box["xmin"], box["xmax"])  # type: ignore[arg-type]
    if box["xmin2"] is not None:
        cols += cells(box["xmin2"], box["xmax2"])  # type: ignore[arg-type]
    return rows * cols


def hotspot_query(days: int = 7, *, cell_m: float = DEFAULT_CELL_M, min_incidents: int = 1,
                  limit: int = 100) -> tuple[str, dict[str, Any]]:
    """The hotspot query and its bound parameters: the one definition of a hotspot listing (cells of
    ``crime_hotspots_since(days, cell_m)`` with at least ``min_incidents`` verified incidents, in
    ``HOTSPOT_ORDER``, at most ``limit``), run by ``CrimeEventRepository.hotspots`` and by the statistics command.

    Raises ``ValidationError`` (``days`` 1..3650, ``cell_m`` 50..50,000 metres, ``min_incidents`` >= 1, ``limit``
    1..10,000).
    """
    return HOTSPOTS, {"days": v.integer("days", days, minimum=1, maximum=MAX_DAYS),
                      "cell_m": v.number("cell_m", cell_m, minimum=MIN_CELL_M, maximum=MAX_CELL_M),
                      "min_incidents": v.integer("min_incidents", min_incidents, minimum=1),
                      "limit": _limit(limit)}


def significant_hotspot_query(days: int = 7, *, cell_m: float = DEFAULT_CELL_M, min_confidence: int = 90,
                              limit: int = 100) -> tuple[str, dict[str, Any]]:
    """The Gi* hotspot query and its bound parameters: ``SIGNIFICANT_HOTSPOTS`` (the last analyze's cells while
    fresh) for a confidence of 90 or more, ``GISTAR_CELLS`` (every cell, computed now) for 0.

    Raises ``ValidationError`` (``days`` 1..3650, ``cell_m`` 50..50,000 metres, ``min_confidence`` one of 0, 90,
    95, 99, ``limit`` 1..10,000).
    """
    min_confidence = v.integer("min_confidence", min_confidence)
    if min_confidence not in CONFIDENCES:
        raise ValidationError("min_confidence", f"must be one of {', '.join(map(str, CONFIDENCES))} (percent), "
                              f"got {min_confidence}")
    query = SIGNIFICANT_HOTSPOTS if min_confidence else GISTAR_CELLS
    return query, {"days": v.integer("days", days, minimum=1, maximum=MAX_DAYS),
                   "cell_m": v.number("cell_m", cell_m, minimum=MIN_CELL_M, maximum=MAX_CELL_M),
                   "min_confidence": min_confidence, "limit": _limit(limit)}


#: The columns INSERT_EVENT and COPY_EVENTS write, in order (the bound names of INSERT_EVENT). The input's
#: ``severity`` is written into ``severity_level``.
WRITE_COLUMNS = ("event_id", "miner_uid", "event_type", "title", "summary", "latitude", "longitude", "timestamp",
                 "severity_level", "confidence_score", "related_reports", "cluster_id", "verification_status",
                 "risk_score", "metadata", "location_text", "time_info", "entities", "time_end", "timestamp_source",
                 "location_source", "request_id", "idempotency_key")
# Most events carry no entities: their '[]' is dumped once here, not JSON-encoded again for every row of a COPY
# (Jsonb's own dumps argument).
_NO_ENTITIES = Jsonb([], dumps=lambda _: b"[]")
_NO_METADATA = Jsonb({}, dumps=lambda _: b"{}")


def _as_is(text: str) -> str:
    """Jsonb's ``dumps`` for a value that is JSON text already."""
    return text


def _row(e: CrimeEvent, miner_uid: int, event_id: uuid.UUID | None, key: uuid.UUID, metadata_json: str,
         p: Placement | None = None) -> tuple[Any, ...]:
    """The WRITE_COLUMNS of ``e``, with idempotency key ``key`` and its metadata already as JSON (``metadata_json``,
    the text its key was computed from: encoded once), placed by ``p`` (``_sources.place``) or, without one, at its
    own point (none: unlocated) and time (none: stamped when stored)."""
    if p is None:
        g = e.geotag
        lat, lng, location_source = (g["lat"], g["lng"], "event") if g is not None else (None, None, None)
        related, ts = e.related_reports, e.timestamp
        timestamp_source = "event" if ts is not None else "stored"
    else:
        lat, lng, location_source = p.latitude, p.longitude, p.location_source
        related, ts, timestamp_source = p.related_reports, p.timestamp, p.timestamp_source
    return (event_id, miner_uid, e.event_type, e.title, e.summary, lat, lng, ts, e.severity, e.confidence_score,
            list(related), e.cluster_id, e.verification_status,
            None if e.risk_score is None else Decimal(f"{e.risk_score:.2f}"),
            Jsonb(metadata_json, dumps=_as_is) if metadata_json else _NO_METADATA, e.location_text,
            e.time_info, Jsonb(list(e.entities)) if e.entities else _NO_ENTITIES, e.time_end, timestamp_source,
            location_source, e.request_id, key)


def idempotency_key(e: CrimeEvent, miner_uid: int, metadata_json: str | None = None) -> uuid.UUID:
    """The key ``e`` of miner ``miner_uid`` is stored under (``crime_events.idempotency_key``, unique): storing an
    event with a known key returns the first event's ``event_id`` and stores nothing.

    The writer's own ``idempotency_key`` when given, else its ``event_id``, else the event's *natural key*: all that
    the miner said about it — the crime type, the time and the end of its range, the point or the location text, the
    related and source reports (in any order), the title and summary (two events of one report differ there), the
    severity, confidence and risk, the cluster, the verdict, the time text, the entities, the request and the
    metadata. Two events that differ in any of these are two events; an event sent again unchanged (a retry) is the
    same event. Each key is scoped to the miner. ``metadata_json``: ``metadata_json(e)`` when the caller has it.

    Example::

        >>> e = CrimeEvent(event_type="theft", confidence_score=0.8, summary="bike taken")
        >>> idempotency_key(e, 7) == idempotency_key(CrimeEvent(event_type="theft", confidence_score=0.8,
        ...                                                      summary="bike taken"), 7)
        True
    """
    if e.idempotency_key is not None:
        parts = ("key", str(miner_uid), _text(e.idempotency_key))
    elif e.event_id is not None:
        parts = ("event_id", str(miner_uid), e.event_id.hex)
    else:
        g = e.geotag
        parts = ("event", str(miner_uid), e.event_type, _instant(e.timestamp), _instant(e.time_end),
                 "~" if g is None else f"{g['lat']!r},{g['lng']!r}", _text(e.location_text),
                 ",".join(sorted(r.hex for r in e.related_reports)) if e.related_reports else "",
                 _text(",".join(sorted(map(_text, e.source_reports)))) if e.source_reports else "",
                 _text(e.title), _text(e.summary), str(e.severity), repr(e.confidence_score), repr(e.risk_score),
                 "~" if e.cluster_id is None else e.cluster_id.hex, e.verification_status, _text(e.time_info),
                 _text(e.request_id), _canonical(list(e.entities)) if e.entities else "",
                 metadata_json if metadata_json is not None else _metadata_json(e))
    # The first 16 bytes of the SHA-1 of the parts. Fixed once stored: a change of this text would give a retry of an
    # older write another key, and a second row.
    return uuid.UUID(bytes=hashlib.sha1("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()[:16])


def _instant(value: datetime | None) -> str:
    """A time as its microseconds since 1970 (the same instant in any offset gives the same text); ``~`` for none."""
    return "~" if value is None else str(round(value.timestamp() * 1_000_000))


def _text(value: str | None) -> str:
    """A text that cannot run into its neighbours (its length first); ``~`` for none."""
    return "~" if value is None else f"{len(value)}:{value}"


#: One text for equal JSON values, whatever the order of their keys (one encoder, built once).
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def _metadata_json(e: CrimeEvent) -> str:
    """``e``'s metadata as canonical JSON text ("" for none): part of its key, and what is written."""
    return _canonical(e.metadata) if e.metadata else ""


def window_hours(hours: int | None, days: int | None) -> int:
    """The look-back in hours of ``hours`` (1..87,600) or ``days`` (1..3650), at most one of them given; all time
    when neither. Raises ``ValidationError``."""
    if hours is not None and days is not None:
        raise ValidationError("hours", "give hours or days, not both")
    if days is not None:
        return 24 * v.integer("days", days, minimum=1, maximum=MAX_DAYS)
    if hours is not None:
        return v.integer("hours", hours, minimum=1, maximum=MAX_HOURS)
    return _ALL_TIME_HOURS


#: One event of a bulk store: its index in the stream, the event, its idempotency key, its metadata as JSON.
Item = tuple[int, CrimeEvent, uuid.UUID, str]
#: Events a bulk store checks and copies at a time (one KNOWN_KEYS query and one COPY per chunk).
BULK_CHUNK = 5_000


def _keyed(events: Iterable[Any], miner_uid: int) -> Iterator[Item]:
    """``(index, event, idempotency key)`` of each item, validated; a bad one raises ``ValidationError`` naming its
    index (``events[3].severity``)."""
    for i, item in enumerate(events):
        try:
            e = CrimeEvent.coerce(item)
        except ValidationError as exc:
            raise ValidationError(f"events[{i}].{exc.field}" if exc.field else f"events[{i}]", exc.rule) from None
        metadata = _metadata_json(e)
        yield i, e, idempotency_key(e, miner_uid, metadata), metadata


async def _fresh(conn: Any, items: list[Item]) -> list[Item]:
    """The ``items`` whose keys are not stored yet (nor in this transaction), the first of each key only."""
    if not items:
        return []
    cur = await conn.execute(KNOWN_KEYS, {"keys": [item[2] for item in items]})
    seen = {row[0] for row in await cur.fetchall()}
    fresh = []
    for item in items:
        if item[2] not in seen:
            seen.add(item[2])
            fresh.append(item)
    return fresh


async def _copy(conn: Any, rows: Iterable[tuple[Any, ...]], *, staged: bool = False) -> None:
    """COPY ``rows`` (WRITE_COLUMNS tuples) into crime_events (through the staging table when ``staged``)."""
    async with conn.cursor().copy(COPY_STAGED_EVENTS if staged else COPY_EVENTS) as copy:
        copy.set_types(COPY_TYPES)
        for row in rows:
            await copy.write_row(row)
    if staged:
        await conn.execute(MOVE_STAGED_EVENTS)


class _Chunk:
    """The next ``BULK_CHUNK`` items of a bulk store's stream, as they are read, without those that must read their
    source reports first (set aside in ``deferred``); ``taken`` counts both."""

    def __init__(self, items: Iterator[Item], deferred: list[Item]) -> None:
        self.items, self.deferred, self.taken = items, deferred, 0

    def __iter__(self) -> Iterator[Item]:
        for item in islice(self.items, BULK_CHUNK):
            self.taken += 1
            if item[1].needs_sources or item[1].timestamp is None:
                self.deferred.append(item)
            else:
                yield item


async def _copy_new(conn: Any, items: Iterable[Item], row: Callable[[Item], tuple[Any, ...]], *,
                    staged: bool = False) -> list[Item]:
    """COPY the ``items`` whose keys are not stored yet (the first of each key); returns those written.

    Optimistic and streamed: the items are validated, keyed and copied as they are read, in a savepoint, so the
    client's work overlaps the server's and a chunk of new events (the common case) costs its COPY alone. When the
    unique key refuses one (a retried batch, a repeat), the savepoint is rolled back and the chunk's items whose keys
    are not stored (``_fresh``) are copied again. A refusal that remains (an ``event_id`` another miner stored) is
    raised. ``staged``: through the staging table (row security)."""
    sent: list[Item] = []
    iterator = iter(items)

    def rows() -> Iterator[tuple[Any, ...]]:
        for item in iterator:
            sent.append(item)
            yield row(item)

    try:
        async with conn.transaction():
            await _copy(conn, rows(), staged=staged)
        return sent
    except pg.UniqueViolation:
        sent.extend(iterator)  # the rest of the chunk, when the refusal came before its end
        fresh = await _fresh(conn, sent)
        if fresh:
            await _copy(conn, map(row, fresh), staged=staged)
        return fresh


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """One event ready to store (``CrimeEventRepository.prepare``): checked, its metadata as JSON, its key."""

    event: CrimeEvent
    miner_uid: int
    key: uuid.UUID
    metadata: str

    @property
    def needs_sources(self) -> bool:
        """Whether storing it reads its source reports first (``CrimeEvent.needs_sources``): not for a group."""
        return self.event.needs_sources


def _conflict(e: CrimeEvent) -> ConflictError:
    """The refusal of an event whose ``event_id`` is stored under another key."""
    return ConflictError(f"event_id: {e.event_id} is already stored, by another miner or under another "
                         "idempotency_key; choose another event_id or leave it out (the store draws one)")


async def _store_one(conn: Any, p: PreparedEvent) -> uuid.UUID:
    """Store one prepared event on ``conn`` (INSERT_EVENT, then FIND_EVENT_BY_KEY when it was stored before); its
    event_id. Raises ``ConflictError`` (and, translated by the caller, the server's refusals)."""
    e, uid, key, metadata = p.event, p.miner_uid, p.key, p.metadata
    if not e.needs_sources:
        cur = await conn.execute(INSERT_EVENT, dict(zip(WRITE_COLUMNS, _row(e, uid, e.event_id, key, metadata),
                                                        strict=True)))
        row = await cur.fetchone()
    else:
        async with conn.transaction():  # the reports read and the event written see the same reports
            placed = (await place(conn, [e]))[0]
            params = dict(zip(WRITE_COLUMNS, _row(e, uid, e.event_id, key, metadata, placed), strict=True))
            cur = await conn.execute(INSERT_EVENT, params)
            row = await cur.fetchone()
    if row is None:  # stored before: a retry (its first event_id), or another writer's event_id
        row = await (await conn.execute(FIND_EVENT_BY_KEY, {"key": key})).fetchone()
    if row is None:
        raise _conflict(e)
    return row[0]


async def _store_together(conn: Any, group: Sequence[PreparedEvent]) -> list[uuid.UUID | Exception]:
    """INSERT_EVENTS for ``group`` on ``conn`` (then FIND_EVENTS_BY_KEYS for the events stored before): each one's
    event_id or ``ConflictError``, in order. Raises the server's refusal of the statement (nothing stored)."""
    order = sorted(range(len(group)), key=lambda i: (group[i].miner_uid, group[i].key))
    params: dict[str, Any] = {}
    for n, i in enumerate(order):
        p = group[i]
        params.update(zip(_numbered_columns(n), _row(p.event, p.miner_uid, p.event.event_id, p.key, p.metadata),
                          strict=True))
    cur = await conn.execute(insert_events_query(len(group)), params)
    ids = dict(await cur.fetchall())
    missing = [p.key for p in group if p.key not in ids]
    if missing:
        ids.update(await (await conn.execute(FIND_EVENTS_BY_KEYS, {"keys": missing})).fetchall())
    return [ids[p.key] if p.key in ids else _conflict(p.event) for p in group]


async def _store_split(conn: Any, group: Sequence[PreparedEvent], outcomes: list[uuid.UUID | Exception]) -> None:
    """Append each event's outcome to ``outcomes``, in order: the group together (``_store_together``); when the
    server refuses that statement, each half the same way, down to single events, whose refusal (translated as
    ``store`` translates it) is their outcome. One refused event among 64 costs 13 statements, not 64. Raises when
    the connection is lost."""
    if len(group) > 1:
        try:
            outcomes.extend(await _store_together(conn, group))
            return
        except psycopg.Error:
            if conn.broken:
                raise
        half = len(group) // 2
        await _store_split(conn, group[:half], outcomes)
        await _store_split(conn, group[half:], outcomes)
        return
    try:
        with translated():
            outcomes.append(await _store_one(conn, group[0]))
    except (LuminarError, psycopg.Error) as exc:
        if isinstance(exc, DatabaseUnavailableError) or conn.broken:
            raise
        outcomes.append(exc)


class CrimeEventRepository(Repository):
    """Crime events on one connection (autocommit or inside a caller's transaction).

    Every method raises ``ValidationError`` for bad arguments before any SQL, and translates database errors:
    ``NotFoundError`` for an unknown related report or cluster, ``ConflictError`` for a duplicate ``event_id``.
    """

    async def store(self, event: CrimeEvent | Any, *, miner_uid: int) -> uuid.UUID:
        """Store one event (a ``CrimeEvent`` or a mapping) produced by ``miner_uid`` and return its ``event_id``.

        Safe to retry: an event whose key (``idempotency_key()``: the writer's key, its ``event_id`` or its natural
        key) is stored already is not stored again; its first ``event_id`` is returned.

        Raises ``ValidationError`` (e.g. ``severity: must be at most 5, got 7``), ``NotFoundError`` when a
        ``related_reports`` id or ``cluster_id`` is unknown (nothing stored), ``ConflictError`` for an ``event_id``
        another miner (or another key) stored.

        Example: ``event_id = await CrimeEventRepository(conn).store(event, miner_uid=123)``
        """
        return await self.store_prepared(self.prepare(event, miner_uid=miner_uid))

    @staticmethod
    def prepare(event: CrimeEvent | Any, *, miner_uid: int) -> PreparedEvent:
        """``event`` of ``miner_uid`` checked and keyed for ``store_prepared`` or ``store_group``; no SQL. Raises
        ``ValidationError`` as ``store`` does.

        Example: ``prepared = CrimeEventRepository.prepare(event, miner_uid=123)``
        """
        e = CrimeEvent.coerce(event)
        uid = v.uid("miner_uid", miner_uid)
        metadata = _metadata_json(e)
        return PreparedEvent(e, uid, idempotency_key(e, uid, metadata), metadata)

    async def store_prepared(self, prepared: PreparedEvent) -> uuid.UUID:
        """``store`` of an event already prepared (``prepare``): its ``event_id``. Raises as ``store`` does.

        Example: ``event_id = await events.store_prepared(CrimeEventRepository.prepare(event, miner_uid=123))``
        """
        async with self._connection() as conn:
            return await _store_one(conn, prepared)

    async def store_group(self, group: Sequence[PreparedEvent]) -> list[uuid.UUID | Exception]:
        """Store the events of several callers (prepared, none that ``needs_sources``) in one statement,
        ``INSERT_EVENTS``, on a connection in autocommit (a pooled one); for each, in order, what ``store_prepared``
        would have returned or raised: its ``event_id`` (the first one of its key, also for a key repeated in the
        group), or the error (``NotFoundError``, ``ConflictError`` ...).

        One statement is one transaction: when the server refuses one event (an unknown related report ...), nothing
        is stored, and the group is sent again in halves, down to the refused event alone (``store_prepared``'s
        statements), so that the refusal is its event's alone and the others are stored. The rows are sent ordered
        by miner and key: concurrent groups take their locks (a miner's counts, the keys) in the same order. Raises
        (for the whole group) what borrowing the connection raises, and ``DatabaseUnavailableError``
        (``may_have_committed``) when the connection is lost under the first statement; lost later, the events not
        answered yet get that error as their outcome.

        Example: ``outcomes = await events.store_group([CrimeEventRepository.prepare(e, miner_uid=7) for e in some])``
        """
        outcomes: list[uuid.UUID | Exception] = []
        async with self._connection() as conn:
            try:
                await _store_split(conn, group, outcomes)
            except (LuminarError, psycopg.Error) as exc:
                if not outcomes:
                    raise  # nothing answered: the whole group's error, as a lone call's
                lost = (translate(exc) or exc) if isinstance(exc, psycopg.Error) else exc
                outcomes.extend([lost] * (len(group) - len(outcomes)))  # the rest: sent, answer lost
        return outcomes

    async def store_many(self, events: Iterable[CrimeEvent | Any], *, miner_uid: int) -> int:
        """Store many events of ``miner_uid`` by binary COPY, in one transaction; returns how many were new.

        Safe to retry: an event whose key (``idempotency_key()``) is stored already, or appears earlier in the same
        batch, is left out, so a retried batch adds nothing (and returns 0).

        ``events`` is streamed (a generator is fine: memory stays flat), ``BULK_CHUNK`` events at a time, each
        chunk one COPY (``_copy_new``: when a key of the chunk is stored already, the chunk is copied again
        without it). Events that must read their
        source reports (named by the reports' own ids, or without a point or time of their own) are set aside and
        written after the stream, their reports read in one query. A bad item raises ``ValidationError`` naming its
        index (``events[3].severity: ...``); an unknown report raises ``NotFoundError`` (``events[3].source_reports[0]:
        ...``); either way nothing is stored.

        Example: ``stored = await CrimeEventRepository(conn).store_many(events, miner_uid=123)``
        """
        uid = v.uid("miner_uid", miner_uid)
        items = _keyed(v.items_of("events", events, "crime events"), uid)
        deferred: list[Item] = []
        stored = verified = 0
        async with self._connection() as conn:
            async with conn.transaction():
                await conn.execute(DEFER_MINER_COUNTS)
                staged = (await (await conn.execute(ROW_SECURITY_ACTIVE)).fetchone())[0]
                if staged:
                    await conn.execute(STAGE_EVENTS)
                while True:
                    chunk = _Chunk(items, deferred)
                    written = await _copy_new(conn, chunk, lambda item: _row(
                        item[1], uid, item[1].event_id or uuid.uuid4(), item[2], item[3]), staged=staged)
                    stored += len(written)
                    verified += sum(item[1].verification_status == "verified" for item in written)
                    if chunk.taken < BULK_CHUNK:
                        break
                if deferred:
                    placements = await place(conn, [item[1] for item in deferred],
                                             [f"events[{item[0]}]." for item in deferred])
                    stamped = any(p.timestamp is None for p in placements)
                    now = (await (await conn.execute(TRANSACTION_NOW)).fetchone())[0] if stamped else None
                    placed = {item[2]: p if p.timestamp is not None else replace(p, timestamp=now)
                              for item, p in zip(deferred, placements, strict=True)}
                    written = await _copy_new(conn, deferred, lambda item: _row(
                        item[1], uid, item[1].event_id or uuid.uuid4(), item[2], item[3], placed[item[2]]),
                        staged=staged)
                    stored += len(written)
                    verified += sum(item[1].verification_status == "verified" for item in written)
                # Only the owner copies verified events (a node's are refused by row security): a node's batch
                # adds nothing, and has no right on miner_performance to add it with.
                await conn.execute(ADD_VERIFIED_EVENTS if verified else END_DEFERRED_COUNTS,
                                   {"miner_uid": uid, "verified": verified})
                return stored

    async def recent(self, hours: int = 24, limit: int = 100) -> list[CrimeEventRecord]:
        """Events whose ``timestamp`` lies in the last ``hours`` (1..87,600), newest first, at most ``limit``
        (1..10,000).

        Raises ``ValidationError`` for anything but integers in range (``"24; DROP TABLE crime_events"``, 1.5,
        True, -1).

        Example: ``events = await CrimeEventRepository(conn).recent(hours=24, limit=100)``
        """
        params = {"hours": v.integer("hours", hours, minimum=1, maximum=MAX_HOURS), "limit": _limit(limit)}
        return await self._many(RECENT_EVENTS, params)

    async def within_radius(self, latitude: float, longitude: float, radius_m: float, *, hours: int | None = None,
                            days: int | None = None, limit: int = 100) -> list[CrimeEventRecord]:
        """Events within ``radius_m`` metres (0..1,000,000, geodesic) of the point, newest first, each with
        ``distance_m``; limited to the last ``hours`` or ``days`` when one is given.

        Raises ``ValidationError`` (coordinates out of range, radius or window not in range, both hours and days).

        Example: ``near = await CrimeEventRepository(conn).within_radius(40.71, -74.0, 1000, days=7)``
        """
        latitude = v.latitude("latitude", latitude)
        longitude = v.longitude("longitude", longitude)
        radius_m = v.number("radius_m", radius_m, minimum=0.0, maximum=MAX_RADIUS_M)
        box = search_boxes(latitude, longitude, radius_m)
        params: dict[str, Any] = {"latitude": latitude, "longitude": longitude, "radius_m": radius_m,
                                  "hours": window_hours(hours, days), "limit": _limit(limit), **box}
        query = EVENTS_WITHIN_RADIUS if grid_cell_count(box) <= MAX_GRID_CELLS else EVENTS_WITHIN_BOX
        return await self._many(query, params)

    async def by_miner(self, miner_uid: int, limit: int = 100) -> list[CrimeEventRecord]:
        """The events stored by ``miner_uid``, newest first, at most ``limit``.

        Example: ``mine = await CrimeEventRepository(conn).by_miner(123, limit=20)``
        """
        return await self._many(EVENTS_BY_MINER, {"miner_uid": v.uid("miner_uid", miner_uid), "limit": _limit(limit)})

    async def by_report(self, report_id: uuid.UUID | str, limit: int = 100) -> list[CrimeEventRecord]:
        """The events whose ``related_reports`` include ``report_id``, newest first.

        Example: ``linked = await CrimeEventRepository(conn).by_report(report_id)``
        """
        return await self._many(EVENTS_BY_REPORT, {"report_id": v.uuid_value("report_id", report_id),
                                                   "limit": _limit(limit)})

    async def get(self, event_id: uuid.UUID | str) -> CrimeEventRecord | None:
        """The event with this ``event_id``, or ``None``. Raises ``ValidationError`` for a malformed UUID.

        Example: ``event = await CrimeEventRepository(conn).get(event_id)``
        """
        rows = await self._many(GET_EVENT, {"event_id": v.uuid_value("event_id", event_id)})
        return rows[0] if rows else None

    async def update_verification(self, event_id: uuid.UUID | str, *, status: str, validator_uid: int,
                                  score: float | None = None) -> CrimeEventRecord:
        """Set an event's ``verification_status`` (pending, verified, disputed, rejected), ``validator_uid``,
        ``verification_score`` (0..1 or ``None``) and ``verified_at`` (now); returns the updated event.

        Raises ``ValidationError`` (unknown status word, score outside [0, 1], bad uid), ``NotFoundError``
        (unknown event).

        Example: ``await CrimeEventRepository(conn).update_verification(eid, status="verified", validator_uid=9,
        score=0.93)``
        """
        params = {"event_id": v.uuid_value("event_id", event_id),
                  "status": v.choice("verification_status", status, VERIFICATION_STATUSES),
                  "validator_uid": v.uid("validator_uid", validator_uid),
                  "score": None if score is None else v.unit_interval("score", score)}
        rows = await self._many(UPDATE_VERIFICATION, params)
        if not rows:
            raise NotFoundError(f"event_id {params['event_id']}: no such crime event")
        return rows[0]

    async def locate(self, event_id: uuid.UUID | str, latitude: float, longitude: float) -> CrimeEventRecord:
        """Give an event its point (``location_source`` becomes ``geocoded``; ``geotag`` and the grid cell follow)
        and return the updated event: an unlocated event then appears in radius searches and hotspots.

        Raises ``ValidationError`` (malformed UUID, coordinates out of range or NaN) before any SQL,
        ``NotFoundError`` (unknown event).

        Example: ``event = await CrimeEventRepository(conn).locate(event_id, 40.7128, -74.0060)``
        """
        params = {"event_id": v.uuid_value("event_id", event_id),
                  "latitude": v.latitude("latitude", latitude),
                  "longitude": v.longitude("longitude", longitude)}
        rows = await self._many(LOCATE_EVENT, params)
        if not rows:
            await self._missing_or_not_yours(params["event_id"])
        return rows[0]

    async def _missing_or_not_yours(self, event_id: uuid.UUID) -> None:
        """Raise why an update of one event changed nothing: ``NotFoundError`` when there is no such event,
        ``PermissionDeniedError`` when row-level security hid it (another miner's event)."""
        async with self._connection() as conn:
            owner = await (await conn.execute(EVENT_MINER, {"event_id": event_id})).fetchone()
        if owner is None:
            raise NotFoundError(f"event_id {event_id}: no such crime event")
        raise PermissionDeniedError(f"event_id {event_id} is miner {owner[0]}'s: a miner's login changes only its "
                                    "own events (row-level security; see docs/security.md)")

    async def unlocated(self, limit: int = 100) -> list[CrimeEventRecord]:
        """The geocoding queue: events without a location, oldest stored first, at most ``limit`` (1..10,000).

        Example: ``queue = await CrimeEventRepository(conn).unlocated(limit=50)``
        """
        return await self._many(UNLOCATED_EVENTS, {"limit": _limit(limit)})

    async def hotspots(self, days: int = 7, *, cell_m: float = DEFAULT_CELL_M, min_incidents: int = 1,
                       limit: int = 100) -> list[Hotspot]:
        """Equal-area cells of ``cell_m`` metres (50..50,000; default 400, the Gi* cells) holding at least
        ``min_incidents`` verified incidents of the last ``days`` (1..3650), in ``HOTSPOT_ORDER`` (biggest first,
        then most recent): the rows of the schema's ``crime_hotspots_since(days, cell_m)`` (always current: an
        event verified a moment ago counts). The query is ``hotspot_query``'s.

        Example: ``spots = await CrimeEventRepository(conn).hotspots(days=7)``
        """
        query, params = hotspot_query(days, cell_m=cell_m, min_incidents=min_incidents, limit=limit)
        return await self._all(query, params, Hotspot, binary=True)

    async def significant_hotspots(self, days: int = 7, *, cell_m: float = DEFAULT_CELL_M, min_confidence: int = 90,
                                   limit: int = 100) -> list[SignificantHotspot]:
        """Getis-Ord Gi* over square equal-area cells of ``cell_m`` metres (50..50,000; EPSG:6933) of the verified
        incidents of the last ``days`` (1..3650): the cells whose confidence (Benjamini-Hochberg adjusted) is at
        least ``min_confidence`` (90, 95, 99; 0 for every cell of the grid, empty ones included), largest ``|z|``
        first, at most ``limit`` (1..10,000). The schema's ``luminar_gistar(days, cell_m)`` computes them.

        Raises ``ValidationError`` for a bad argument (before any SQL), and naming ``cell_m`` when the window's
        incidents span more than a million cells (a larger cell or fewer days fixes it).

        Example: ``hot = await CrimeEventRepository(conn).significant_hotspots(days=7, min_confidence=95)``
        """
        query, params = significant_hotspot_query(days, cell_m=cell_m, min_confidence=min_confidence, limit=limit)
        try:
            return await self._all(query, params, SignificantHotspot, binary=True)
        except ValidationError as exc:  # luminar_gistar refuses a grid of too many cells (SQLSTATE 22023)
            raise ValidationError("cell_m", f"{exc.rule}; use a larger cell_m or fewer days") from exc

    async def counts(self) -> tuple[int, int]:
        """``(all events, verified events)``."""
        async with self._connection() as conn:
            cur = await conn.execute(COUNT_EVENTS)
            total, verified = await cur.fetchone()  # type: ignore[misc]
        return total, verified

    async def _many(self, query: str, params: Any) -> list[CrimeEventRecord]:
        # Binary results: timestamps, arrays and floats parse faster than their text forms.
        return await self._all(query, params, CrimeEventRecord, binary=True)
