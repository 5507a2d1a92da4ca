"""The facade: the specification's calls, each a coroutine, composed from the repositories.

``from luminar_store import db`` (or ``luminar_store.access.db``) is a ``LuminarDB`` built lazily on its first call:
it reads ``.env`` (never overriding the environment) and ``load_settings()``, the way the nodes are started
(``LUMINAR_ENV=production python neurons/luminar_miner.py``). Other code and tests build their own
``LuminarDB(settings)`` or ``db.configure(settings)``.

Every argument is validated once, before any connection is borrowed or SQL runs (``ValidationError`` naming the
field): inputs by their model (``luminar_store.models``: a dataclass or a plain mapping with the same field names,
aliases accepted), other arguments by the repository method that binds them. The facade checks nothing itself: it
hands each repository the pool as its connection source (``luminar_store.repositories._base``), and the repository
borrows a connection only after its checks.
Reads go to a healthy read replica when ``LUMINAR_DB_REPLICA_URLS`` names some (they may lag the primary, by at most
``LUMINAR_DB_REPLICA_MAX_LAG`` bytes of WAL), writes to the primary; inside ``async with db.reading_own_writes():``
reads go to the primary too.

Example::

    from luminar_store import db

    events = await db.get_recent_events(hours=24, limit=100)          # newest first
    hotspots = await db.get_crime_hotspots(days=7)                    # biggest first
    stats = await db.get_miner_stats(miner_uid=123)                   # None for an unknown miner
    event_id = await db.store_crime_event(crime_event, miner_uid=123)
    await db.update_miner_performance(miner_uid=123, hotkey="hotkey_string",
                                      scores={"integrity": 0.95, "clustering": 0.88, "novelty": 0.75, "quality": 0.92})
    report_id = await db.store_raw_report(report)
    await db.store_consensus_record(event.event_id, validator_uid, scores, round_number)
    await db.update_event_verification(event_id, validator_uid, "verified", 0.93)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, TypeVar

import psycopg

from luminar_store.config import Settings, load_dotenv_file, load_settings
from luminar_store.database import Database
from luminar_store.errors import DatabaseUnavailableError, ValidationError, WriteInDoubtError
from luminar_store.group_commit import GroupCommitter
from luminar_store.limits import (
    DEFAULT_ANALYSIS_DAYS,
    DEFAULT_CELL_M,
    GROUP_COMMIT_FLUSHES,
    GROUP_COMMIT_MAX_CALLS,
    HOTSPOT_MIN_INCIDENTS,
)
from luminar_store.models import (
    CrimeCluster,
    CrimeEvent,
    CrimeEventRecord,
    DatabaseStats,
    Hotspot,
    MinerRoundResult,
    MinerStats,
    NearRepeat,
    RawIncidentReport,
    RawReportRecord,
    RiskZone,
    SignificantHotspot,
)
from luminar_store.replicas import ReplicaStatus
from luminar_store.repositories.clusters import ClusterRepository
from luminar_store.repositories.consensus import ConsensusRepository
from luminar_store.repositories.crime_events import CrimeEventRepository, PreparedEvent
from luminar_store.repositories.miners import MinerRepository
from luminar_store.repositories.near_repeats import NearRepeatRepository
from luminar_store.repositories.raw_reports import RawReportRepository
from luminar_store.repositories.risk_zones import RiskZoneRepository
from luminar_store.repositories.validators import ValidatorRepository
from luminar_store.server_state import ServerStatus

__all__ = [
    "LuminarDB",
    "db",
    "DatabaseStats",
    "DatabaseTransaction",
    "initialize_database",
    "close_database",
    "health_check",
]


T = TypeVar("T")
log = logging.getLogger(__name__)

# The pauses between attempts of an in-doubt write: doubling from the first to the last, within the call's deadline.
_FIRST_RETRY_DELAY = 0.05
_LAST_RETRY_DELAY = 1.0


# The group committer of store_crime_event, one per Database (shared by the facades on it).
_EVENT_COMMITTERS: weakref.WeakKeyDictionary[Database, GroupCommitter[PreparedEvent, uuid.UUID]] = (
    weakref.WeakKeyDictionary())


def _event_committer(database: Database) -> GroupCommitter[PreparedEvent, uuid.UUID]:
    """The group committer of ``database``'s events (``store_crime_event``), made on first use."""
    committer = _EVENT_COMMITTERS.get(database)
    if committer is None:
        events = CrimeEventRepository(database.connection)
        committer = GroupCommitter(events.store_prepared, events.store_group, max_calls=GROUP_COMMIT_MAX_CALLS,
                                   flushes=min(GROUP_COMMIT_FLUSHES, database.settings.pool_max_size))
        _EVENT_COMMITTERS[database] = committer
    return committer


def _one_shot(items: Iterable[Any]) -> str | None:
    """Why ``items`` cannot be sent twice (a one-shot iterator: a second pass would be empty), or ``None`` (a list,
    a tuple ... iterates again)."""
    if isinstance(items, Iterator):
        return ("A one-shot iterator (a generator) is not sent again here: call again with the same items in a list; "
                "the events or reports stored before are not stored twice")
    return None


class LuminarDB:
    """The data layer's calls for miners, validators and tools.

    ``LuminarDB(settings)`` uses those settings; ``LuminarDB()`` loads them (``.env`` + environment) on its first
    call. ``database=`` shares an existing ``Database``. Pools open on the first call or ``initialize()``.

    Every method raises ``ValidationError`` before any SQL for a bad argument, ``DatabaseUnavailableError`` when the
    server cannot be reached and ``PoolExhaustedError`` when no connection frees up in time.
    """

    def __init__(self, settings: Settings | None = None, *, database: Database | None = None,
                 read_dotenv: bool = False) -> None:
        self._settings = settings
        self._database = database
        self._read_dotenv = read_dotenv

    def __repr__(self) -> str:
        return f"<LuminarDB {self._database!r}>" if self._database else "<LuminarDB (settings not loaded yet)>"

    @property
    def database(self) -> Database:
        """The ``Database`` underneath (created from the settings on first access; raises ``ConfigError``)."""
        if self._database is None:
            if self._settings is None:
                if self._read_dotenv:
                    load_dotenv_file()
                self._settings = load_settings()
            self._database = Database(self._settings)
        return self._database

    def configure(self, settings: Settings | None = None, *, database: Database | None = None) -> None:
        """Point this facade at other settings (or an existing ``Database``); ``None`` reloads from the environment
        on the next call. Close the previous pools first (``await db.close()``) if they were used.

        Example: ``db.configure(load_settings("testing"))``
        """
        self._settings, self._database = settings, database

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Open the pools now rather than on the first call. Raises ``DatabaseUnavailableError``."""
        await self.database.initialize()

    async def close(self) -> None:
        """Close the pools (a later call reopens them)."""
        if self._database is not None:
            await self._database.close()

    async def health_check(self) -> bool:
        """True when the primary accepts a connection and answers (a busy pool is not unhealthy); never raises for a
        down server. Example: ``ok = await db.health_check()``
        """
        return await self.database.health_check()

    def server_status(self) -> dict[str, ServerStatus]:
        """Up or down, since when (and why) for each server seen so far: ``luminar-primary``,
        ``luminar-replica0`` ... (``Database.server_status``). Asks no server.

        Example: ``if not db.server_status()["luminar-primary"].up: ...``
        """
        return self.database.server_status()

    def replica_status(self) -> list[ReplicaStatus]:
        """Each read replica's health, lag and whether reads use it (``Database.replica_status``). Asks no server.

        Example: ``for replica in db.replica_status(): print(replica.line())``
        """
        return self.database.replica_status()

    def reading_own_writes(self) -> AbstractAsyncContextManager[None]:
        """Within the block this task's reads go to the primary, which has every write committed so far
        (``Database.reading_own_writes``).

        Example::

            event_id = await db.store_crime_event(event, miner_uid=7)
            async with db.reading_own_writes():
                event = await db.get_event(event_id)
        """
        return self.database.reading_own_writes()

    async def _write(self, what: str, write: Callable[[], Awaitable[T]], *, not_again: str | None = None) -> T:
        """Run one write; when the connection is lost after it was sent (it may have committed), run it again as
        soon as the server answers, until ``LUMINAR_DB_CONNECT_TIMEOUT`` seconds after the call began. Harmless:
        every write retried here is idempotent (events by their key, reports by their source id, rounds by their
        round key, consensus records by event, validator and round; verdicts and status changes set a value). Claims
        are not retried: a lost claim's reports come back when its lease ends.

        Raises ``WriteInDoubtError`` (``may_have_committed``) when the write could not be confirmed in time, or at
        once when ``not_again`` says why this input is not sent twice (a one-shot iterator); the error of a failure
        before anything was sent (``DatabaseUnavailableError``, nothing written) at once.
        """
        settings = self.database.settings
        deadline = time.monotonic() + settings.connect_timeout
        delay = _FIRST_RETRY_DELAY
        lost: DatabaseUnavailableError | None = None
        while True:
            try:
                return await write()
            except DatabaseUnavailableError as exc:
                if lost is None and not exc.may_have_committed:
                    raise  # nothing reached the server
                lost = lost or exc
                if not_again is not None or time.monotonic() + delay > deadline:
                    raise WriteInDoubtError(
                        f"{what}: the connection to PostgreSQL at {settings.describe()} was lost after the write was "
                        "sent; the write may or may not have committed. " + (not_again or (
                            f"The server did not answer again within {settings.connect_timeout} s "
                            "(LUMINAR_DB_CONNECT_TIMEOUT); calling again with the same arguments stores nothing "
                            "twice"))) from exc
                log.debug("%s: connection lost after the write was sent; trying again in %.2f s", what, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _LAST_RETRY_DELAY)

    # -- crime events ---------------------------------------------------------------------------------------------
    async def get_recent_events(self, hours: int = 24, limit: int = 100) -> list[CrimeEventRecord]:
        """Events of the last ``hours`` (integer 1..87,600), newest first, at most ``limit`` (1..10,000).

        Each ``CrimeEventRecord`` has ``event_id``, ``event_type``, ``latitude``, ``longitude``, ``geotag``,
        ``timestamp``, ``severity``, ``confidence_score``, ``verification_status`` ...

        Example: ``events = await db.get_recent_events(hours=24, limit=100)``
        """
        return await CrimeEventRepository(self.database.read_connection).recent(hours, limit)

    async def get_events_within_radius(self, latitude: float, longitude: float, radius_m: float, *,
                                       hours: int | None = None, days: int | None = None,
                                       limit: int = 100) -> list[CrimeEventRecord]:
        """Events within ``radius_m`` metres (geodesic, 0..1,000,000) of a point, newest first, each with
        ``distance_m``; only the last ``hours`` or ``days`` when given.

        Example: ``near = await db.get_events_within_radius(40.7128, -74.0060, 1000, days=7)``
        """
        return await CrimeEventRepository(self.database.read_connection).within_radius(
            latitude, longitude, radius_m, hours=hours, days=days, limit=limit)

    async def get_crime_hotspots(self, days: int = 7, *, cell_m: float = DEFAULT_CELL_M,
                                 min_incidents: int = HOTSPOT_MIN_INCIDENTS, limit: int = 100,
                                 significant: bool = False) -> list[Hotspot] | list[SignificantHotspot]:
        """Verified incidents of the last ``days`` (1..3650) grouped by square equal-area cells of ``cell_m``
        metres (default 400, the cells of ``get_significant_hotspots``), biggest first (then the most recent),
        cells of at least ``min_incidents`` (default ``HOTSPOT_MIN_INCIDENTS``, 2: a cell of one incident is not a
        hotspot; pass 1 for every cell). Incidents, not events: the events of several miners sharing their lowest
        related report count once. Each ``Hotspot`` has ``latitude``/``longitude`` (cell centre, 6 decimals),
        ``incident_count``, ``avg_severity``, ``max_severity``, ``crime_types``, ``first_seen``, ``last_seen``.

        ``significant=True`` returns ``get_significant_hotspots(days, cell_m=cell_m)`` instead (Getis-Ord Gi*;
        ``min_incidents`` does not apply there).

        Example: ``hotspots = await db.get_crime_hotspots(days=7)``
        """
        if not isinstance(significant, bool):
            raise ValidationError("significant", f"must be True or False, got {type(significant).__name__}")
        if significant:
            return await self.get_significant_hotspots(days, cell_m=cell_m, limit=limit)
        return await CrimeEventRepository(self.database.read_connection).hotspots(
            days, cell_m=cell_m, min_incidents=min_incidents, limit=limit)

    async def get_significant_hotspots(self, days: int = 7, *, cell_m: float = DEFAULT_CELL_M,
                                       min_confidence: int = 90, limit: int = 100) -> list[SignificantHotspot]:
        """Where verified incidents of the last ``days`` are significantly concentrated (or sparse): Getis-Ord Gi*
        over square equal-area cells of ``cell_m`` metres (default 400), empty cells of the window's extent
        included, Benjamini-Hochberg adjusted. The cells of at least ``min_confidence`` (90, 95, 99; 0: all),
        largest ``|z|`` first. Each ``SignificantHotspot`` has the cell, its centre, ``incidents``, ``z``, ``p``,
        ``q``, ``confidence``, ``gi_bin`` and ``classification`` (hot, cold, not significant).

        Raises ``ValidationError`` for a bad argument, before any SQL.

        Example: ``hot = [h for h in await db.get_significant_hotspots(days=7) if h.classification == "hot"]``
        """
        return await CrimeEventRepository(self.database.read_connection).significant_hotspots(
            days, cell_m=cell_m, min_confidence=min_confidence, limit=limit)

    async def get_risk_zones(self, *, made_by: str | None = None, min_level: int = 1,
                             limit: int = 100) -> list[RiskZone]:
        """Risk zones valid now, highest risk first (``risk_level``, then ``risk_score``): those a node stored
        (``made_by="node"``), those the risk zone analysis made from contiguous Gi* hot cells
        (``made_by="analysis"``: ``crime_density`` per km², ``recent_incidents``, ``trend_direction`` increasing,
        decreasing, stable or insufficient data with its Mann-Kendall ``trend_p_value``), or both (``None``); of at
        least ``min_level`` (1..5), at most ``limit`` (1..10,000).

        Raises ``ValidationError`` naming the field, before any SQL.

        Example: ``rising = [z for z in await db.get_risk_zones(made_by="analysis") if z.trend_p_value]``
        """
        zones = RiskZoneRepository(self.database.read_connection)
        return await zones.current(made_by=made_by, min_level=min_level, limit=limit)

    async def get_risk_at(self, latitude: float, longitude: float) -> RiskZone | None:
        """The risk at a location: the zone valid now covering the point with the highest risk (level, then score),
        or ``None`` when no zone covers it.

        Raises ``ValidationError`` (``latitude`` in [-90, 90], ``longitude`` in [-180, 180]) before any SQL.

        Example: ``zone = await db.get_risk_at(40.7128, -74.0060); level = zone.risk_level if zone else 0``
        """
        return await RiskZoneRepository(self.database.read_connection).risk_at(latitude, longitude)

    async def get_crime_clusters(self, days: int = DEFAULT_ANALYSIS_DAYS, *, analysis_only: bool = False,
                                 limit: int = 100) -> list[CrimeCluster]:
        """Crime clusters whose time window ends within the last ``days`` days (1..3650), newest first, then the
        biggest: those miners stored (``made_by == "node"``) and those the database's DBSCAN run made
        (``"analysis"``: ``event_count`` counts incidents; ``metadata`` holds the run's ``eps_m``, ``min_points``,
        ``window_days``); ``analysis_only=True`` for the latter alone.

        Raises ``ValidationError`` for a bad argument, before any SQL.

        Example: ``clusters = await db.get_crime_clusters(days=7, analysis_only=True)``
        """
        return await ClusterRepository(self.database.read_connection).recent(days, analysis_only=analysis_only,
                                                                            limit=limit)

    async def get_near_repeats(self, days: int = 7, *, limit: int = 100) -> list[NearRepeat]:
        """Near repeats among the incidents of the last ``days`` days (1..3650), newest first, one per incident: an
        incident that followed an earlier one of the same type within the run's distance and hours, at another
        address (written by the analysis run, ``luminar_store.analysis.near_repeats``).

        Raises ``ValidationError`` for a bad argument, before any SQL.

        Example: ``for n in await db.get_near_repeats(days=7): print(n.event_type, n.distance_m, n.hours_after)``
        """
        return await NearRepeatRepository(self.database.read_connection).recent(days, limit=limit)

    async def get_event(self, event_id: uuid.UUID | str) -> CrimeEventRecord | None:
        """One event by ``event_id``, or ``None``. Example: ``event = await db.get_event(event_id)``"""
        return await CrimeEventRepository(self.database.read_connection).get(event_id)

    async def get_events_by_miner(self, miner_uid: int, limit: int = 100) -> list[CrimeEventRecord]:
        """The events ``miner_uid`` stored, newest first. Example: ``await db.get_events_by_miner(123, limit=20)``
        """
        return await CrimeEventRepository(self.database.read_connection).by_miner(miner_uid, limit)

    async def store_crime_event(self, crime_event: CrimeEvent | Mapping[str, Any], miner_uid: int) -> uuid.UUID:
        """Store one processed event of ``miner_uid`` and return its ``event_id`` (a ``UUID``, truthy). Safe to retry:
        an event already stored (the same key: its ``idempotency_key``, ``event_id`` or natural key) returns its
        first ``event_id``. Concurrent calls share statements (group commit, ``luminar_store.group_commit``: calls
        arriving while others are being written go together, one INSERT for them all); each call still gets its own
        ``event_id`` or its own error. A call with nothing else under way is sent at once, on its own.

        Raises ``ValidationError`` (nothing stored), ``NotFoundError`` when a ``related_reports`` id or
        ``cluster_id`` is unknown (nothing stored), ``ConflictError`` for an ``event_id`` another miner stored,
        ``WriteInDoubtError`` when the answer was lost and the server did not come back in time.

        Example: ``event_id = await db.store_crime_event({"event_type": "theft", "geotag": {"lat": 40.7,
        "lng": -74.0}, "timestamp": now, "severity": 2, "confidence_score": 0.8}, miner_uid=123)``
        """
        prepared = CrimeEventRepository.prepare(crime_event, miner_uid=miner_uid)  # ValidationError: nothing sent
        if prepared.needs_sources:
            events = CrimeEventRepository(self.database.connection)
            return await self._write("store_crime_event", lambda: events.store_prepared(prepared))
        committer = _event_committer(self.database)
        return await self._write("store_crime_event", lambda: committer.submit(prepared))

    async def store_crime_events(self, crime_events: Iterable[CrimeEvent | Mapping[str, Any]],
                                 miner_uid: int) -> int:
        """Store many events of ``miner_uid`` by COPY in one transaction (streamed); returns how many were new (events
        already stored, or repeated in the batch, are left out: a retried batch adds nothing and returns 0). A bad
        item raises ``ValidationError`` naming its index and nothing is stored. Give a list, not a generator, to let
        the call send it again when its answer is lost.

        Example: ``stored = await db.store_crime_events(events, miner_uid=123)``
        """
        events = CrimeEventRepository(self.database.connection)
        return await self._write("store_crime_events", lambda: events.store_many(crime_events, miner_uid=miner_uid),
                                 not_again=_one_shot(crime_events))

    async def locate_event(self, event_id: uuid.UUID | str, latitude: float, longitude: float) -> CrimeEventRecord:
        """Give an event its point, e.g. once its ``location_text`` is geocoded (``location_source`` becomes
        ``geocoded``); an unlocated event then counts in radius searches, hotspots and clusters. Returns the updated
        event. Raises ``ValidationError`` (coordinates out of range), ``NotFoundError`` (unknown event).

        Example: ``await db.locate_event(event_id, 40.7128, -74.0060)``
        """
        events = CrimeEventRepository(self.database.connection)
        return await self._write("locate_event", lambda: events.locate(event_id, latitude, longitude))

    async def get_unlocated_events(self, limit: int = 100) -> list[CrimeEventRecord]:
        """Events stored without a point (the text flow's: only a ``location_text``), oldest first: the geocoding
        queue. Example: ``for e in await db.get_unlocated_events(50): ...``
        """
        return await CrimeEventRepository(self.database.read_connection).unlocated(limit)

    async def update_event_verification(self, event_id: uuid.UUID | str, validator_uid: int,
                                        verification_status: str, score: float | None = None) -> CrimeEventRecord:
        """Record ``validator_uid``'s verdict on an event: ``verification_status`` (pending, verified, disputed,
        rejected) and its ``score`` (0..1); returns the updated event (truthy). The reference's argument order.
        Raises ``NotFoundError`` for an unknown event.

        Example: ``await db.update_event_verification(event_id, 9, "verified", 0.93)``
        """
        events = CrimeEventRepository(self.database.connection)
        return await self._write("update_event_verification", lambda: events.update_verification(
            event_id, status=verification_status, validator_uid=validator_uid, score=score))

    # -- raw reports ----------------------------------------------------------------------------------------------
    async def store_raw_report(self, report: RawIncidentReport | Mapping[str, Any]) -> uuid.UUID:
        """Store one raw report and return its ``report_id``; storing a known ``external_id`` (or the protocol's
        non-UUID ``report_id``) again returns the first ``report_id`` and stores nothing. The reporter's id is stored
        as its pseudonym when the settings say so (``LUMINAR_PSEUDONYMIZE``; ``ConfigError`` when on without
        ``LUMINAR_PSEUDONYM_KEY``).

        Example: ``report_id = await db.store_raw_report({"report_id": "app-42", "text_description": "...",
        "geotag": {"lat": 40.7, "lng": -74.0}, "timestamp": now})``
        """
        database = self.database
        reports = RawReportRepository(database.connection, pseudonyms=database.settings.pseudonyms)
        return await self._write("store_raw_report", lambda: reports.store(report))

    async def store_raw_reports(self, reports: Iterable[RawIncidentReport | Mapping[str, Any]], *,
                                skip_existing: bool = True) -> int:
        """Store many raw reports by COPY in one transaction; returns how many were new. ``skip_existing=False``
        is the faster plain COPY, refusing the whole batch (``ConflictError``) when an ``external_id`` is known.

        Example: ``stored = await db.store_raw_reports(reports)``
        """
        database = self.database
        repo = RawReportRepository(database.connection, pseudonyms=database.settings.pseudonyms)
        return await self._write("store_raw_reports", lambda: repo.store_many(reports, skip_existing=skip_existing),
                                 not_again=_one_shot(reports) or (None if skip_existing else (
                                     "skip_existing=False is not sent again here (a second COPY would be refused); "
                                     "call again with skip_existing=True")))

    async def get_raw_report(self, report_id: uuid.UUID | str) -> RawReportRecord | None:
        """One raw report by ``report_id``, or ``None``. Example: ``await db.get_raw_report(report_id)``"""
        return await RawReportRepository(self.database.connection).get(report_id)

    async def claim_reports(self, miner_uid: int, limit: int = 10) -> list[RawReportRecord]:
        """Claim up to ``limit`` (1..1000) of the oldest pending reports for ``miner_uid`` (they become
        ``processing``); concurrent claimers never get the same report.

        A claim is a lease of ``LUMINAR_CLAIM_LEASE_MINUTES`` (default 30): a claim older than that (its miner
        stopped) returns to ``pending`` on the next call, so settle a batch within the lease. A claim whose rows
        never reach the caller (the connection broke while reading them) is rolled back or, if it had committed,
        expires with its lease.

        Example: ``batch = await db.claim_reports(miner_uid=123, limit=50)``
        """
        database = self.database
        return await RawReportRepository(database.connection).claim(
            miner_uid, limit, lease_minutes=database.settings.claim_lease_minutes)

    async def release_stale_claims(self, older_than_minutes: int | None = None) -> int:
        """Return to ``pending`` now every report still ``processing`` whose claim is older than
        ``older_than_minutes`` (1..43,200; default: the lease, ``LUMINAR_CLAIM_LEASE_MINUTES``); returns how many.
        ``processing_attempts`` is kept. ``claim_reports`` does this by itself before it picks; this call is for
        operators (``luminar-db reports release-claims``) and for a queue nobody claims from.

        Example: ``released = await db.release_stale_claims(older_than_minutes=60)``
        """
        database = self.database
        minutes = database.settings.claim_lease_minutes if older_than_minutes is None else older_than_minutes
        return await RawReportRepository(database.connection).release_stale(minutes)

    async def mark_report_processed(self, report_id: uuid.UUID | str) -> RawReportRecord:
        """Mark a claimed report ``processed``. Raises ``NotFoundError`` for an unknown report.

        Example: ``await db.mark_report_processed(report.report_id)``
        """
        reports = RawReportRepository(self.database.connection)
        return await self._write("mark_report_processed", lambda: reports.mark_processed(report_id))

    async def mark_report_failed(self, report_id: uuid.UUID | str, error_message: str, *,
                                 retry: bool = False) -> RawReportRecord:
        """Record a processing failure (``failed``, or ``pending`` again when ``retry``). Raises ``NotFoundError``.

        Example: ``await db.mark_report_failed(report.report_id, "unreadable media", retry=True)``
        """
        reports = RawReportRepository(self.database.connection)
        return await self._write("mark_report_failed", lambda: reports.mark_failed(report_id, error_message,
                                                                                     retry=retry))

    async def get_pending_reports(self, limit: int = 50) -> list[RawReportRecord]:
        """Up to ``limit`` (1..10,000) pending reports, oldest first. A read, not a claim: to take reports for
        processing use ``claim_reports`` (or ``update_report_status(report_id, "processing")`` per report).

        Example: ``for report in await db.get_pending_reports(limit=50): print(report["external_id"])``
        """
        return await RawReportRepository(self.database.connection).pending(limit)

    async def update_report_status(self, report_id: uuid.UUID | str, status: str, *, miner_uid: int | None = None,
                                   error_message: str | None = None) -> RawReportRecord:
        """Move a report to ``status`` (pending, processing, processed, failed, rejected); returns the updated
        report (truthy). ``report_id`` is our ``report_id`` or the report's source id (``external_id``, e.g.
        ``"LMR_20250101_ABCD1234"``, what the reference matched).

        ``processing`` claims the report exactly as ``claim_reports`` does (``claimed_by`` = ``miner_uid``, NULL
        when not given), and only a pending one: otherwise ``ConflictError``. ``processed`` / ``failed`` are
        ``mark_report_processed`` / ``mark_report_failed`` (``error_message``, default "marked failed
        (update_report_status)"); ``pending`` releases the claim. Raises ``NotFoundError`` for an unknown report.

        Example: ``await db.update_report_status("LMR_20250101_ABCD1234", "processing", miner_uid=123)``
        """
        return await RawReportRepository(self.database.connection).set_status(
            report_id, status, miner_uid=miner_uid, error_message=error_message)

    # -- miners, validators, consensus ----------------------------------------------------------------------------
    async def get_miner_stats(self, miner_uid: int) -> MinerStats | None:
        """A miner's record (scores, ``total_rounds``, ``success_rate`` in percent, ``events_submitted`` ...), or
        ``None`` for an unknown miner.

        Example: ``stats = await db.get_miner_stats(miner_uid=123)``
        """
        return await MinerRepository(self.database.read_connection).stats(miner_uid)

    async def update_miner_performance(self, miner_uid: int, hotkey: str, scores: Mapping[str, float], *,
                                       round_number: int | None = None,
                                       round_key: str | None = None) -> MinerRoundResult:
        """Record a scoring round: ``scores`` holds ``integrity``, ``clustering``, ``novelty``, ``quality`` (all four
        required) in [0, 1], and optionally ``total`` or ``final`` (the same meaning; both given must agree): the
        round's overall score as the validator weighted it, in [0, 1], used instead of the mean of the four. A known
        uid with a new hotkey is a re-registered miner and starts a fresh record. Returns the record after the round.

        A round is counted once per ``round_number`` (or ``round_key``): sent again, the record comes back unchanged
        with ``counted`` False. Without either, each call is a new round; the call's own retry (after a lost
        acknowledgement) is still counted once.

        Example: ``await db.update_miner_performance(miner_uid=123, hotkey="hotkey_string", scores={"integrity":
        0.95, "clustering": 0.88, "novelty": 0.75, "quality": 0.92}, round_number=4051)``
        """
        miners = MinerRepository(self.database.connection)
        if round_number is None and round_key is None:
            round_key = f"call-{uuid.uuid4()}"  # this call's own retry counts once
        return await self._write("update_miner_performance", lambda: miners.record_round(
            miner_uid, hotkey, scores, round_number=round_number, round_key=round_key))

    async def store_consensus_record(self, event_id: uuid.UUID | str, validator_uid: int,
                                     scores: Mapping[str, float], round_number: int, *,
                                     final_score: float | None = None) -> uuid.UUID:
        """Store a validator's scores of an event in a round and return the ``record_id``; storing the same record
        again returns the same id. Raises ``NotFoundError`` (unknown event), ``ConflictError`` (other scores for the
        same event, validator and round).

        Example: ``await db.store_consensus_record(event.event_id, 7, {"accuracy": 0.9}, 12)``
        """
        consensus = ConsensusRepository(self.database.connection)
        return await self._write("store_consensus_record", lambda: consensus.store(
            event_id, validator_uid, scores, round_number, final_score=final_score))

    async def get_database_stats(self) -> DatabaseStats:
        """Counts of the whole database: reports (all, pending), events (all, verified), ``verification_rate``
        (percent of events verified), active miners and validators, ``avg_processing_time`` (mean seconds from a
        report's arrival to its first event). The reference's names answer too: ``total_reports`` (=
        ``raw_reports``), ``processed_events`` (= ``crime_events``).

        Example: ``stats = await db.get_database_stats(); print(stats.verification_rate)``
        """
        async with self.database.read_connection() as conn:
            reports, pending = await RawReportRepository(conn).counts()
            events, verified = await CrimeEventRepository(conn).counts()
            miners = await MinerRepository(conn).count_active()
            validators = await ValidatorRepository(conn).count_active()
            processing_time = await RawReportRepository(conn).avg_processing_time()
        rate = round(100.0 * verified / events, 2) if events else 0.0
        return DatabaseStats(raw_reports=reports, pending_reports=pending, crime_events=events,
                             verified_events=verified, verification_rate=rate, active_miners=miners,
                             active_validators=validators, avg_processing_time=processing_time)


#: The facade of ``from luminar_store import db``: settings from ``.env`` and the environment on its first call.
db = LuminarDB(read_dotenv=True)


# -- the reference's module-level helpers, acting on the module's ``db`` ----------------------------------------------
async def initialize_database() -> None:
    """Open the pools of the module's ``db`` (``await db.initialize()``). Raises ``DatabaseUnavailableError``."""
    await db.initialize()


async def close_database() -> None:
    """Close the pools of the module's ``db`` (``await db.close()``); a later call reopens them."""
    await db.close()


async def health_check() -> bool:
    """True when the module's ``db`` reaches its primary (``await db.health_check()``); never raises for a down
    server."""
    return await db.health_check()


class DatabaseTransaction:
    """``async with DatabaseTransaction() as tx:`` one transaction on a pooled primary connection of the module's
    ``db`` (or of the ``LuminarDB`` given): committed when the block ends, rolled back when it raises, the
    connection returned to the pool either way. ``tx`` is what ``Database.transaction()`` yields: a
    ``psycopg.AsyncConnection`` inside the transaction; the repositories run on it
    (``await RawReportRepository(tx, pseudonyms=settings.pseudonyms).store(report)``), so their writes commit
    together.

    Coming from the reference: its ``DatabaseTransaction`` yielded an **asyncpg** connection. Code that ran SQL on
    it changes as follows (and the column names are ours, see the README):

    - placeholders: ``$1, $2`` become ``%s, %s`` with the values in ONE tuple, or ``%(name)s`` with a mapping;
      a literal ``%`` in such a query is written ``%%``.
    - ``await conn.execute(q, a, b)`` becomes ``await tx.execute(q, (a, b))``; it returns a cursor, and the rows
      changed are ``cursor.rowcount`` (asyncpg returned a status string such as ``"UPDATE 1"``).
    - ``await conn.fetch(q, a)`` becomes ``await (await tx.execute(q, (a,))).fetchall()``: tuples; for dicts use
      ``cur = tx.cursor(row_factory=psycopg.rows.dict_row); await cur.execute(q, (a,)); await cur.fetchall()``.
    - ``fetchrow`` becomes ``fetchone()`` (``None`` without a row); ``fetchval`` becomes ``fetchone()`` and ``[0]``.
    - ``executemany(q, rows)`` becomes ``await tx.cursor().executemany(q, rows)``.
    - a nested ``conn.transaction()`` becomes ``async with tx.transaction():`` (a savepoint).
    - never call ``tx.commit()`` / ``tx.rollback()`` inside the block: leaving it commits, raising rolls back.
    - ``asyncpg`` errors become ``psycopg`` errors (``psycopg.errors.UniqueViolation`` ...); the repositories raise
      ``luminar_store.errors`` (``ConflictError`` ...).

    Example::

        async with DatabaseTransaction() as tx:
            cur = await tx.execute("UPDATE raw_incident_reports SET status = %s WHERE external_id = %s",
                                   ("processed", "LMR_20250101_ABCD1234"))
            assert cur.rowcount == 1
    """

    def __init__(self, database: LuminarDB | None = None) -> None:
        self._facade = database
        self._block: Any = None

    async def __aenter__(self) -> psycopg.AsyncConnection:
        facade = self._facade if self._facade is not None else db
        block = facade.database.transaction()
        tx = await block.__aenter__()
        self._block = block
        return tx

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        block, self._block = self._block, None
        return await block.__aexit__(exc_type, exc, tb)
