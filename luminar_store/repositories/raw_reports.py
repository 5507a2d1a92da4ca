"""Raw incident reports: store (idempotent on the source id), bulk store by COPY, claim for processing, settle.

A report's life: ``pending`` → ``processing`` (claimed by one miner, ``FOR UPDATE SKIP LOCKED`` so two miners never
get the same report) → ``processed``, ``failed`` or back to ``pending`` for a retry.

A claim is a lease: it carries its time (``claimed_at``) and holds the report for ``lease_minutes``
(``LUMINAR_CLAIM_LEASE_MINUTES``). Every ``claim()`` first returns the claims older than the lease to ``pending``
(their miner stopped, or lost its connection after the claim committed), in the same transaction as it picks, so a
report is never stranded for longer than a lease; ``processing_attempts`` is kept, so a report that keeps failing
shows. A claim commits only once its rows are read: when reading them fails, nothing stays claimed.

Idempotency: ``external_id`` (the report's id at its source) is unique. ``store()`` of a known ``external_id``
returns the first ``report_id`` and changes nothing (a later version of the same report is not merged).
``store_many()`` skips known ids the same way by default (COPY into a temporary table, then one
``INSERT ... ON CONFLICT DO NOTHING``); ``skip_existing=False`` is the plain COPY path, faster, and refuses the
whole batch with ``ConflictError`` when one id is known.

Reporters' ids: a repository given ``pseudonyms`` (``Settings.pseudonyms``; the facade always passes its settings')
writes each report's ``reporter_id`` as its pseudonym (``luminar_store.privacy``), in the one place every write path
builds its row (``_row``: ``store`` and both paths of ``store_many``), so the clear id never reaches the database.
Without it the id is written as sent (local and testing). Code composing repositories in its own transaction passes
them too: ``RawReportRepository(tx, pseudonyms=database.settings.pseudonyms)``.

Example::

    reports = RawReportRepository(conn)
    report_id = await reports.store(report)
    batch = await reports.claim(miner_uid=7, limit=10)
    await reports.mark_processed(batch[0].report_id)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from luminar_store import validation as v
from luminar_store.errors import ConflictError, NotFoundError, ValidationError
from luminar_store.limits import DEFAULT_CLAIM_LEASE_MINUTES, MAX_CLAIM, MAX_LIMIT, MAX_STALE_MINUTES
from luminar_store.models import RawIncidentReport, RawReportRecord
from luminar_store.models.inputs import DEFAULT_REPORT_SOURCE, REPORT_STATUSES
from luminar_store.privacy import Pseudonyms
from luminar_store.repositories._base import ConnectionSource, Repository, record_row

__all__ = ["RawReportRepository", "REPORT_COLUMNS", "WRITE_COLUMNS", "MAX_CLAIM", "MAX_STALE_MINUTES",
           "DEFAULT_CLAIM_LEASE_MINUTES"]

log = logging.getLogger(__name__)

# name: report_columns
# The columns of a RawReportRecord, in its field order (record_row builds records from them by position).
REPORT_COLUMNS = """report_id, external_id, user_id, crime_type, text_description, latitude, longitude, "timestamp",
       media_urls, media_hashes, metadata, status, processing_attempts, claimed_by, claimed_at, processed_at,
       error_message, created_at, updated_at, source"""

#: The columns INSERT_REPORT and the COPY statements write, in order (the bound names of INSERT_REPORT). The input's
#: ``description`` is written into ``text_description``, its ``reporter_id`` into ``user_id``; a report without a
#: ``source`` gets ``DEFAULT_REPORT_SOURCE`` (``mobile_app``, the column's default too).
WRITE_COLUMNS = ("external_id", "user_id", "crime_type", "text_description", "latitude", "longitude", "timestamp",
                 "media_urls", "media_hashes", "metadata", "source")

# name: insert_report
# Stores one report unless its external_id is known: returns the new report_id, or no row when it was known.
INSERT_REPORT = """
INSERT INTO raw_incident_reports
    (external_id, user_id, crime_type, text_description, latitude, longitude, "timestamp",
     media_urls, media_hashes, metadata, source)
VALUES (%(external_id)s, %(user_id)s, %(crime_type)s, %(text_description)s, %(latitude)s, %(longitude)s,
        %(timestamp)s, %(media_urls)s, %(media_hashes)s, %(metadata)s, %(source)s)
ON CONFLICT (external_id) DO NOTHING
RETURNING report_id
"""

# name: report_id_by_external_id
# The report_id stored under a source id (the second step of an idempotent store).
REPORT_ID_BY_EXTERNAL_ID = "SELECT report_id FROM raw_incident_reports WHERE external_id = %(external_id)s"

# name: copy_reports
# The plain bulk path: binary COPY straight into the table (a known external_id fails the whole COPY).
COPY_REPORTS = """
COPY raw_incident_reports
    (external_id, user_id, crime_type, text_description, latitude, longitude, "timestamp",
     media_urls, media_hashes, metadata, source)
FROM STDIN (FORMAT BINARY)
"""
COPY_TYPES = ["text", "text", "text", "text", "float8", "float8", "timestamptz", "text[]", "text[]", "jsonb",
              "text"]

# name: create_incoming_reports
# The idempotent bulk path, step 1: a session-private staging table, dropped at the end of the transaction.
CREATE_INCOMING_REPORTS = """
CREATE TEMP TABLE luminar_incoming_reports (
    external_id text, user_id text, crime_type text, text_description text, latitude float8, longitude float8,
    "timestamp" timestamptz, media_urls text[], media_hashes text[], metadata jsonb, source text
) ON COMMIT DROP
"""

# name: copy_incoming_reports
# Step 2: binary COPY into the staging table.
COPY_INCOMING_REPORTS = """
COPY luminar_incoming_reports
    (external_id, user_id, crime_type, text_description, latitude, longitude, "timestamp",
     media_urls, media_hashes, metadata, source)
FROM STDIN (FORMAT BINARY)
"""

# name: move_incoming_reports
# Step 3 of the plain path under row security (a node's login may not COPY into the table): move every staged row
# (a known external_id fails the whole statement, as it fails the plain COPY).
MOVE_INCOMING_REPORTS = """
INSERT INTO raw_incident_reports
    (external_id, user_id, crime_type, text_description, latitude, longitude, "timestamp",
     media_urls, media_hashes, metadata, source)
SELECT external_id, user_id, crime_type, text_description, latitude, longitude, "timestamp",
       media_urls, media_hashes, metadata, source
  FROM luminar_incoming_reports
"""

# name: insert_incoming_reports
# Step 3: move the staged rows whose external_id is new (duplicates inside the batch: the first one wins).
INSERT_INCOMING_REPORTS = MOVE_INCOMING_REPORTS + "ON CONFLICT (external_id) DO NOTHING\n"

# Whether this session writes under row-level security (a node's login: COPY into the table is refused).
ROW_SECURITY_ACTIVE = "SELECT row_security_active('raw_incident_reports')"

# name: drop_incoming_reports
# Step 4: drop the staging table now, so a second bulk store in the same transaction can create it again.
DROP_INCOMING_REPORTS = "DROP TABLE luminar_incoming_reports"

# name: claim_set
# What claiming does to a report, the one definition for claim_reports and claim_report: it becomes 'processing',
# claimed by the miner (NULL when the caller names none), now, one more attempt.
CLAIM_SET = """status = 'processing', claimed_by = %(miner_uid)s, claimed_at = now(),
       processing_attempts = processing_attempts + 1"""

# name: claim_reports
# Hands the oldest pending reports to one miner. SKIP LOCKED: a concurrent claimer passes over rows being claimed;
# a row claimed and committed meanwhile fails the re-checked status = 'pending' and is skipped too.
CLAIM_REPORTS = """
WITH picked AS (
    SELECT report_id
      FROM raw_incident_reports
     WHERE status = 'pending'
     ORDER BY "timestamp"
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE raw_incident_reports
   SET {claim_set}
 WHERE report_id IN (SELECT report_id FROM picked)
RETURNING {report_columns}
""".replace("{claim_set}", CLAIM_SET).replace("{report_columns}", REPORT_COLUMNS)

# name: mark_processed
# Settles a report as processed (clears an earlier error).
MARK_PROCESSED = """
UPDATE raw_incident_reports
   SET status = 'processed', processed_at = now(), error_message = NULL
 WHERE report_id = %(report_id)s
RETURNING {report_columns}
""".replace("{report_columns}", REPORT_COLUMNS)

# name: mark_failed
# Records a failure: status 'failed', or 'pending' again (claim released) when the report is to be retried.
MARK_FAILED = """
UPDATE raw_incident_reports
   SET status = %(status)s, error_message = %(error)s,
       claimed_by = CASE WHEN %(status)s = 'pending' THEN NULL ELSE claimed_by END,
       claimed_at = CASE WHEN %(status)s = 'pending' THEN NULL ELSE claimed_at END
 WHERE report_id = %(report_id)s
RETURNING {report_columns}
""".replace("{report_columns}", REPORT_COLUMNS)

# name: release_stale
# Returns to 'pending' the reports claimed longer ago than the given minutes (their lease ran out: the miner stopped,
# or its connection died after the claim committed); processing_attempts is kept. The schema's function
# luminar_release_stale_claims (the one definition) runs as the owner, since it crosses miners: a miner's login has
# no right on another's claims. It finds them through idx_reports_processing_claimed_at and locks with SKIP LOCKED:
# a claim being settled right now is its miner's, and two claimers releasing together never wait on each other.
RELEASE_STALE = "SELECT luminar_release_stale_claims(%(minutes)s)"

# name: get_report
# One report by its report_id.
GET_REPORT = """
SELECT {report_columns}
  FROM raw_incident_reports
 WHERE report_id = %(report_id)s
""".replace("{report_columns}", REPORT_COLUMNS)

# name: count_reports
# All reports and the pending ones (for database statistics).
COUNT_REPORTS = """
SELECT count(*) AS total, count(*) FILTER (WHERE status = 'pending') AS pending FROM raw_incident_reports
"""

# name: pending_reports
# The oldest pending reports, without claiming them (idx_reports_pending); the order claim_reports takes them in.
PENDING_REPORTS = """
SELECT {report_columns}
  FROM raw_incident_reports
 WHERE status = 'pending'
 ORDER BY "timestamp", created_at
 LIMIT %(limit)s
""".replace("{report_columns}", REPORT_COLUMNS)

# name: resolve_report_id
# The report_id of a report named by its report_id (when the text is a UUID) or by its source id (external_id);
# a report_id match wins over an external_id that happens to look like a UUID.
RESOLVE_REPORT_ID = """
SELECT report_id
  FROM raw_incident_reports
 WHERE report_id = %(report_uuid)s OR external_id = %(external_id)s
 ORDER BY (report_id = %(report_uuid)s) IS TRUE DESC
 LIMIT 1
"""

# name: claim_report
# Claims one given report as claim_reports claims the oldest (CLAIM_SET), only while it is pending: a report
# claimed by someone else meanwhile fails the re-checked status (the row lock serializes the two) and is not taken.
CLAIM_REPORT = """
UPDATE raw_incident_reports
   SET {claim_set}
 WHERE report_id = %(report_id)s AND status = 'pending'
RETURNING {report_columns}
""".replace("{claim_set}", CLAIM_SET).replace("{report_columns}", REPORT_COLUMNS)

# name: set_report_status
# Sets 'pending' (claim released, as mark_failed's retry and release_stale do; error kept) or 'rejected' (claim
# kept as a record of who had it).
SET_REPORT_STATUS = """
UPDATE raw_incident_reports
   SET status = %(status)s,
       claimed_by = CASE WHEN %(status)s = 'pending' THEN NULL ELSE claimed_by END,
       claimed_at = CASE WHEN %(status)s = 'pending' THEN NULL ELSE claimed_at END
 WHERE report_id = %(report_id)s
RETURNING {report_columns}
""".replace("{report_columns}", REPORT_COLUMNS)

# name: avg_processing_time
# Mean seconds from a report's arrival (its created_at) to its first crime event (the earliest created_at of the
# events whose related_reports contain it), over the reports that have an event; 0 when none has.
AVG_PROCESSING_TIME = """
SELECT coalesce(avg(extract(epoch FROM first_event.created_at - r.created_at)), 0)::float8
  FROM (SELECT related.report_id, min(e.created_at) AS created_at
          FROM crime_events e
         CROSS JOIN LATERAL unnest(e.related_reports) AS related(report_id)
         GROUP BY related.report_id) AS first_event
  JOIN raw_incident_reports r ON r.report_id = first_event.report_id
"""

#: What update_report_status does with a report when no error message is given for 'failed'.
DEFAULT_FAILURE_MESSAGE = "marked failed (update_report_status)"


def _row(r: RawIncidentReport, pseudonyms: Pseudonyms | None) -> tuple[Any, ...]:
    """The row written for a report (WRITE_COLUMNS): the one place a reporter's id is pseudonymised."""
    g = r.geotag
    reporter = r.reporter_id if pseudonyms is None else pseudonyms(r.reporter_id)
    return (r.external_id, reporter, r.crime_type, r.description, g["lat"], g["lng"], r.timestamp,
            list(r.media_urls), list(r.media_hashes), Jsonb(r.metadata), r.source or DEFAULT_REPORT_SOURCE)


def _rows(reports: Iterable[Any], pseudonyms: Pseudonyms | None) -> Iterable[tuple[Any, ...]]:
    """Validated rows, streamed: a bad item stops the COPY (its transaction rolls back) naming its index."""
    for i, item in enumerate(reports):
        try:
            yield _row(RawIncidentReport.coerce(item), pseudonyms)
        except ValidationError as exc:
            raise ValidationError(f"reports[{i}].{exc.field}" if exc.field else f"reports[{i}]", exc.rule) from None


class RawReportRepository(Repository):
    """Raw incident reports on one connection (autocommit or inside a caller's transaction).

    Every method raises ``ValidationError`` for bad arguments before any SQL, and translates database errors
    (``luminar_store.repositories._errors``).
    """

    def __init__(self, conn: ConnectionSource, *, pseudonyms: Pseudonyms | None = None) -> None:
        """``conn`` as for every repository; ``pseudonyms``: what writes reporters' ids (``Settings.pseudonyms``),
        ``None`` to write them as sent."""
        super().__init__(conn)
        self._pseudonyms = pseudonyms

    async def store(self, report: RawIncidentReport | Any) -> uuid.UUID:
        """Store one report (a ``RawIncidentReport`` or a mapping) and return its ``report_id``; a known
        ``external_id`` returns the first ``report_id`` and stores nothing.

        Raises ``ValidationError`` (e.g. ``geotag.lat: must be between -90 and 90, got 95``).

        Example: ``report_id = await RawReportRepository(conn).store(report)``
        """
        r = RawIncidentReport.coerce(report)
        params = dict(zip(WRITE_COLUMNS, _row(r, self._pseudonyms), strict=True))
        async with self._connection() as conn:
            # A concurrent writer of the same external_id may commit between the two statements' snapshots, so
            # the pair is retried: the insert then conflicts and the lookup sees the winner's row.
            for _ in range(3):
                cur = await conn.execute(INSERT_REPORT, params)
                row = await cur.fetchone()
                if row is None:
                    cur = await conn.execute(REPORT_ID_BY_EXTERNAL_ID, params)
                    row = await cur.fetchone()
                if row is not None:
                    return row[0]
        raise ConflictError(f"external_id {r.external_id!r}: a concurrent writer kept the row locked; retry")

    async def store_many(self, reports: Iterable[RawIncidentReport | Any], *, skip_existing: bool = True) -> int:
        """Store many reports by binary COPY in one transaction and return how many were stored.

        ``reports`` is streamed (a generator is fine). ``skip_existing=True`` skips known ``external_id`` values
        (and repeats within the batch); ``False`` is the plain COPY path, which raises ``ConflictError`` and stores
        nothing when one is known. A bad item raises ``ValidationError`` naming its index
        (``reports[3].timestamp: ...``) and stores nothing.

        Example: ``stored = await RawReportRepository(conn).store_many(reports)``
        """
        if not isinstance(skip_existing, bool):
            raise ValidationError("skip_existing", f"must be true or false, got {type(skip_existing).__name__}")
        reports = v.items_of("reports", reports, "reports")
        async with self._connection() as conn:
            async with conn.transaction():
                cur = conn.cursor()
                staged = skip_existing or (await (await cur.execute(ROW_SECURITY_ACTIVE)).fetchone())[0]
                if not staged:
                    async with cur.copy(COPY_REPORTS) as copy:
                        copy.set_types(COPY_TYPES)
                        for row in _rows(reports, self._pseudonyms):
                            await copy.write_row(row)
                    return cur.rowcount
                await cur.execute(CREATE_INCOMING_REPORTS)
                async with cur.copy(COPY_INCOMING_REPORTS) as copy:
                    copy.set_types(COPY_TYPES)
                    for row in _rows(reports, self._pseudonyms):
                        await copy.write_row(row)
                await cur.execute(INSERT_INCOMING_REPORTS if skip_existing else MOVE_INCOMING_REPORTS)
                stored = cur.rowcount
                await cur.execute(DROP_INCOMING_REPORTS)
                return stored

    async def claim(self, miner_uid: int, limit: int = 10, *,
                    lease_minutes: int = DEFAULT_CLAIM_LEASE_MINUTES) -> list[RawReportRecord]:
        """Claim up to ``limit`` (1..1000) of the oldest pending reports for miner ``miner_uid``: they become
        ``processing``, with ``claimed_by``/``claimed_at`` set and ``processing_attempts`` raised by one. Concurrent
        claimers never receive the same report. Returned oldest first; empty when nothing is pending.

        The claim is a lease of ``lease_minutes`` (1..43,200): first, in the same transaction, the claims older
        than that return to ``pending`` (logged as a warning with their count), so they can be handed out again,
        to any miner. The claim commits only once its rows are read: if reading them fails, it rolls back and
        nothing stays claimed. On a connection inside the caller's transaction it is a savepoint of it.

        Raises ``ValidationError`` for a uid, limit or lease that is not an integer in range.

        Example: ``batch = await RawReportRepository(conn).claim(miner_uid=7, limit=50, lease_minutes=30)``
        """
        params = {"miner_uid": v.uid("miner_uid", miner_uid),
                  "limit": v.integer("limit", limit, minimum=1, maximum=MAX_CLAIM)}
        lease = {"minutes": v.integer("lease_minutes", lease_minutes, minimum=1, maximum=MAX_STALE_MINUTES)}
        async with self._connection() as conn:
            if conn.autocommit:
                # The pool's connections: this call's own transaction (a savepoint when the caller has a
                # transaction() block open). The rows are fetched before the block can commit, so a failed read
                # rolls it back. (Not pipelined: no gain measured, and a connection killed mid-pipeline makes
                # psycopg log warnings on the node's stderr.)
                async with conn.transaction():
                    released, rows = await self._release_and_pick(conn, lease, params)
            else:
                # A connection that is not autocommit is in the caller's transaction: the release starts it (when
                # idle) and the pick is a savepoint of it, rolled back alone when its rows cannot be read.
                released, rows = await self._release_and_pick(conn, lease, params, savepoint=True)
        if released:
            log.warning("took back %d claim(s) of raw reports older than the %d-minute lease before miner %d's "
                        "claim: their miner stopped or lost its connection", released, lease["minutes"],
                        params["miner_uid"])
        return sorted(rows, key=lambda r: (r.timestamp, r.created_at))

    @staticmethod
    async def _release_and_pick(conn: psycopg.AsyncConnection, lease: dict[str, int], params: dict[str, int], *,
                                savepoint: bool = False) -> tuple[int, list[RawReportRecord]]:
        """``claim()``'s two statements: take back the expired claims, then claim and read the rows (the pick in a
        savepoint when asked). Returns (claims taken back, the claimed rows)."""
        released = (await (await conn.execute(RELEASE_STALE, lease)).fetchone())[0]
        async with conn.transaction() if savepoint else nullcontext():
            claiming = conn.cursor(row_factory=record_row(RawReportRecord))
            await claiming.execute(CLAIM_REPORTS, params)
            rows = await claiming.fetchall()
        return released, rows

    async def mark_processed(self, report_id: uuid.UUID | str) -> RawReportRecord:
        """Mark a report ``processed`` (``processed_at`` = now, error cleared) and return it.

        Raises ``ValidationError`` for a malformed UUID, ``NotFoundError`` for an unknown report.

        Example: ``await RawReportRepository(conn).mark_processed(report_id)``
        """
        rid = v.uuid_value("report_id", report_id)
        return await self._settled(MARK_PROCESSED, {"report_id": rid}, rid)

    async def mark_failed(self, report_id: uuid.UUID | str, error_message: str, *,
                          retry: bool = False) -> RawReportRecord:
        """Record that processing failed with ``error_message`` (1..10,000 characters): status ``failed``, or
        ``pending`` again with the claim released when ``retry`` is true. Returns the report.

        Raises ``ValidationError`` (malformed UUID, empty message), ``NotFoundError`` (unknown report).

        Example: ``await RawReportRepository(conn).mark_failed(report_id, "no location", retry=True)``
        """
        rid = v.uuid_value("report_id", report_id)
        error = v.text("error_message", error_message)
        if not isinstance(retry, bool):
            raise ValidationError("retry", f"must be true or false, got {type(retry).__name__}")
        params = {"report_id": rid, "error": error, "status": "pending" if retry else "failed"}
        return await self._settled(MARK_FAILED, params, rid)

    async def release_stale(self, older_than_minutes: int = 60) -> int:
        """Return to ``pending`` every report claimed more than ``older_than_minutes`` (1..43,200) ago and still
        ``processing`` (its miner stopped); returns how many. ``processing_attempts`` is kept. A claim being settled
        at this very moment (its row locked) is left to its miner. ``claim()`` does the same with its lease.

        Example: ``released = await RawReportRepository(conn).release_stale(30)``
        """
        minutes = v.integer("older_than_minutes", older_than_minutes, minimum=1, maximum=MAX_STALE_MINUTES)
        async with self._connection() as conn:
            released = (await (await conn.execute(RELEASE_STALE, {"minutes": minutes})).fetchone())[0]
        if released:
            log.info("released %d claim(s) of raw reports older than %d minutes", released, minutes)
        return released

    async def get(self, report_id: uuid.UUID | str) -> RawReportRecord | None:
        """The report with this ``report_id``, or ``None``. Raises ``ValidationError`` for a malformed UUID.

        Example: ``report = await RawReportRepository(conn).get(report_id)``
        """
        rid = v.uuid_value("report_id", report_id)
        return await self._one(GET_REPORT, {"report_id": rid}, RawReportRecord)

    async def counts(self) -> tuple[int, int]:
        """``(all reports, pending reports)``."""
        async with self._connection() as conn:
            cur = await conn.execute(COUNT_REPORTS)
            total, pending = await cur.fetchone()  # type: ignore[misc]
        return total, pending

    async def pending(self, limit: int = 50) -> list[RawReportRecord]:
        """Up to ``limit`` (1..10,000) pending reports, oldest first (by ``timestamp``, the order ``claim`` takes
        them in). A read: nothing is claimed, so two callers may get the same reports (``claim`` hands each report to
        one miner).

        Example: ``reports = await RawReportRepository(conn).pending(limit=50)``
        """
        params = {"limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT)}
        return await self._all(PENDING_REPORTS, params, RawReportRecord)

    async def set_status(self, report_id: uuid.UUID | str, status: str, *, miner_uid: int | None = None,
                         error_message: str | None = None) -> RawReportRecord:
        """Move a report to ``status`` (one of ``REPORT_STATUSES``) and return it.

        ``report_id`` is our ``report_id`` (a ``UUID`` or its text) or the report's source id (``external_id``,
        e.g. ``"LMR_20250101_ABCD1234"``). By status:

        - ``processing``: a claim, exactly as ``claim`` makes (``claimed_by`` = ``miner_uid`` or NULL,
          ``claimed_at`` = now, one more attempt), of a *pending* report only: any other status raises
          ``ConflictError`` (someone claimed or settled it first).
        - ``processed``: ``mark_processed``. ``failed``: ``mark_failed`` with ``error_message`` (default
          ``DEFAULT_FAILURE_MESSAGE``).
        - ``pending``: back in the queue, claim released (error message kept). ``rejected``: status only.

        Raises ``ValidationError`` (status, miner_uid, error_message, a report_id that is neither) before any SQL,
        ``NotFoundError`` for an unknown report, ``ConflictError`` as above.

        Example: ``await RawReportRepository(conn).set_status("LMR_20250101_ABCD1234", "processing")``
        """
        status = v.choice("status", status, REPORT_STATUSES)
        uid = None if miner_uid is None else v.uid("miner_uid", miner_uid)
        error = DEFAULT_FAILURE_MESSAGE if error_message is None else v.text("error_message", error_message)
        rid = await self._resolve(report_id)
        if status == "processed":
            return await self.mark_processed(rid)
        if status == "failed":
            return await self.mark_failed(rid, error)
        if status == "processing":
            claimed = await self._one(CLAIM_REPORT, {"report_id": rid, "miner_uid": uid}, RawReportRecord)
            if claimed is not None:
                return claimed
            current = await self.get(rid)
            if current is None:
                raise NotFoundError(f"report_id {rid}: no such raw incident report")
            raise ConflictError(f"report {current.external_id} ({rid}) is {current.status}, not pending: only a "
                                "pending report can be claimed (another claimer took it or it was settled)")
        return await self._settled(SET_REPORT_STATUS, {"report_id": rid, "status": status}, rid)

    async def avg_processing_time(self) -> float:
        """Mean seconds from a report's arrival to its first crime event, over the reports that have one (0.0 when
        none has); see ``AVG_PROCESSING_TIME``."""
        return float(await self._value(AVG_PROCESSING_TIME) or 0.0)

    async def _resolve(self, report_id: uuid.UUID | str) -> uuid.UUID:
        """The ``report_id`` of a report given by ``report_id`` or ``external_id``; ``NotFoundError`` without one."""
        if isinstance(report_id, uuid.UUID):
            return report_id
        if not isinstance(report_id, str) or not report_id.strip() or len(report_id) > 200:
            raise ValidationError("report_id", f"must be a report_id (UUID) or a report's source id (external_id, "
                                               f"1..200 characters), got {report_id!r:.60}")
        report_id = v.text("report_id", report_id, max_length=200)  # no NUL, no lone surrogate
        try:
            as_uuid: uuid.UUID | None = uuid.UUID(report_id)
        except ValueError:
            as_uuid = None
        rid = await self._value(RESOLVE_REPORT_ID, {"report_uuid": as_uuid, "external_id": report_id})
        if rid is None:
            raise NotFoundError(f"report_id {report_id!r}: no raw incident report has this report_id or external_id")
        return rid

    async def _settled(self, query: str, params: Any, rid: uuid.UUID) -> RawReportRecord:
        """The report ``query`` updated; ``NotFoundError`` when no report has ``rid``."""
        return await self._found(query, params, RawReportRecord, f"report_id {rid}: no such raw incident report")
