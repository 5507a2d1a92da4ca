"""Dataclasses for inputs and records (attribute access: ``event.event_id``, ``stats.success_rate``).

Inputs may also be given as plain mappings with the same field names; the facade accepts both.

Inputs (``RawIncidentReport``, ``CrimeEvent``) are **valid by construction**: ``__post_init__`` runs the checks of
``luminar_store.validation`` and raises ``ValidationError`` naming the field, and normalizes the values (crime types to
lower-case words, ``geotag`` to ``{"lat": float, "lng": float}``, ``related_reports`` to UUIDs). ``coerce()`` turns a
mapping (or another dataclass, or a pydantic model) into one, reading the protocol's field names as aliases:

==========================  =========================================================================
input                       accepted aliases
==========================  =========================================================================
RawIncidentReport           ``report_id`` → ``external_id`` (only when it is not a UUID),
                            ``text_description`` → ``description``, ``user_id`` → ``reporter_id``,
                            ``latitude`` + ``longitude`` → ``geotag``
CrimeEvent                  ``crime_type`` → ``event_type``, ``description`` → ``summary``,
                            ``confidence`` → ``confidence_score``, ``latitude`` + ``longitude`` → ``geotag``
==========================  =========================================================================

Records (``RawReportRecord``, ``CrimeEventRecord``, ``Hotspot``, ``DatabaseStats``) are what queries return.

Example::

    >>> e = CrimeEvent.coerce({"crime_type": "Armed Robbery", "geotag": {"lat": 40.7, "lng": -74.0},
    ...                        "timestamp": "2025-01-01T12:00:00+00:00", "severity": 4, "confidence_score": 0.9})
    >>> e.event_type, e.latitude
    ('armed_robbery', 40.7)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from luminar_store import validation as v
from luminar_store.errors import ValidationError

__all__ = [
    "REPORT_STATUSES",
    "VERIFICATION_STATUSES",
    "RawIncidentReport",
    "CrimeEvent",
    "RawReportRecord",
    "CrimeEventRecord",
    "Hotspot",
    "DatabaseStats",
    # scoring records (defined below the banner at the end of this module)
    "MinerPerformance",
    "MinerRoundResult",
    "MinerStats",
    "ActiveMiner",
    "ValidatorStats",
    "ValidatorUpdate",
    "ConsensusRecord",
    "ConsensusSummary",
    "ConsensusAccuracy",
    "NewCrimeCluster",
    "CrimeCluster",
    "NewRiskZone",
    "RiskZone",
    "AuditEntry",
]

#: Life cycle of a raw report: pending → processing (claimed by a miner) → processed | failed | rejected.
REPORT_STATUSES = ("pending", "processing", "processed", "failed", "rejected")
#: Verdict of the validators on a crime event.
VERIFICATION_STATUSES = ("pending", "verified", "disputed", "rejected")


# Frozen dataclasses normalize their own fields once, in __post_init__.
_set = object.__setattr__
# Crime types recur: each distinct word is checked by validation.slug once (bounded, so it cannot grow forever).
_SLUGS: dict[str, str] = {}


def _slug(field_name: str, value: object) -> str:
    clean = _SLUGS.get(value) if type(value) is str else None  # noqa: E721 - exact str: the cache's keys
    if clean is None:
        clean = v.slug(field_name, value)
        if len(_SLUGS) < 4096:
            _SLUGS[value] = clean  # type: ignore[index]
    return clean


def _geotag(value: object) -> dict[str, float]:
    """validation.geotag, with the protocol's usual form (two floats in range) accepted without the general path."""
    if type(value) is dict:  # noqa: E721
        lat, lng = value.get("lat"), value.get("lng")
        if type(lat) is float and type(lng) is float and -90.0 <= lat <= 90.0 and -180.0 <= lng <= 180.0:  # noqa: E721
            return {"lat": lat, "lng": lng}
    lat, lng = v.geotag("geotag", value)
    return {"lat": lat, "lng": lng}


def _metadata(value: object) -> dict[str, object]:
    """validation.mapping, with a flat dict of text, whole numbers, finite floats, booleans and nulls accepted
    without the general (recursive) path."""
    if type(value) is dict:  # noqa: E721
        for key, item in value.items():
            kind = type(item)
            if type(key) is not str or "\x00" in key:  # noqa: E721
                break
            if kind is str:
                if "\x00" in item:
                    break
            elif kind is float:
                if not math.isfinite(item):
                    break
            elif kind is not int and kind is not bool and item is not None:
                break
        else:
            return dict(value)
    return v.mapping("metadata", value)


def _as_mapping(cls: type, value: object, what: str) -> dict[str, object]:
    if type(value) is dict or isinstance(value, Mapping):  # noqa: E721 - the common case without the ABC check
        return dict(value)  # type: ignore[call-overload]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)  # a pydantic model (the nodes' protocol objects)
    if callable(dump) and not isinstance(value, type):
        dumped = dump()
        if isinstance(dumped, Mapping):
            return dict(dumped)
    raise ValidationError(what, f"must be a {cls.__name__} or a mapping with its field names, got "
                                f"{type(value).__name__}")


def _location(data: dict[str, object]) -> None:
    """``latitude`` + ``longitude`` given at the top level become ``geotag``."""
    if "geotag" not in data and "latitude" in data and "longitude" in data:
        data["geotag"] = {"lat": data.pop("latitude"), "lng": data.pop("longitude")}


_SHAPES: dict[type, tuple[frozenset[str], tuple[str, ...]]] = {}


def _shape(cls: type) -> tuple[frozenset[str], tuple[str, ...]]:
    """(field names, required field names) of an input dataclass, computed once."""
    shape = _SHAPES.get(cls)
    if shape is None:
        fields = dataclasses.fields(cls)
        shape = _SHAPES[cls] = (
            frozenset(f.name for f in fields),
            tuple(f.name for f in fields
                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING),
        )
    return shape


def _build(cls: type, data: dict[str, object], aliases: Mapping[str, str]) -> object:
    for alias, name in aliases.items():
        if alias in data:
            value = data.pop(alias)
            if data.get(name) is None:
                data[name] = value
            elif value is not None and value != data[name]:
                raise ValidationError(alias, f"is an alias of {name} and both are given with different values")
    names, required = _shape(cls)
    if not names.issuperset(data):
        unknown = sorted(str(k) for k in data if k not in names)
        raise ValidationError(unknown[0], f"is not a field of {cls.__name__}; fields: {', '.join(sorted(names))}")
    for name in required:
        if name not in data:
            raise ValidationError(name, "is required")
    return cls(**data)


@dataclass(frozen=True, slots=True)
class RawIncidentReport:
    """An unprocessed report from a citizen's app (input of ``store_raw_report``).

    ``external_id``: the report's id at its source (1..200 characters), the idempotency key: storing the same
    ``external_id`` again returns the first ``report_id``. ``description``: 1..10,000 characters. ``geotag``:
    ``{"lat": .., "lng": ..}``. ``timestamp``: timezone-aware, at most 5 minutes in the future. ``crime_type``:
    a lower-case word (``"Armed Robbery"`` becomes ``armed_robbery``). ``media_hashes`` pairs with ``media_urls``.

    Raises ``ValidationError`` naming the field, e.g. ``geotag.lat: must be between -90 and 90, got 95``.
    """

    external_id: str
    description: str
    geotag: Mapping[str, float]
    timestamp: dt.datetime
    reporter_id: str | None = None
    crime_type: str | None = None
    media_urls: tuple[str, ...] = ()
    media_hashes: tuple[str, ...] = ()
    metadata: Mapping[str, object] = field(default_factory=dict)

    ALIASES: ClassVar[Mapping[str, str]] = {"text_description": "description", "user_id": "reporter_id"}

    def __post_init__(self) -> None:
        _set(self, "external_id", v.text("external_id", self.external_id, max_length=200))
        _set(self, "description", v.text("description", self.description))
        _set(self, "geotag", _geotag(self.geotag))
        _set(self, "timestamp", v.aware_datetime("timestamp", self.timestamp))
        _set(self, "reporter_id", v.optional_text("reporter_id", self.reporter_id, max_length=200))
        _set(self, "crime_type", None if self.crime_type is None else _slug("crime_type", self.crime_type))
        urls = tuple(v.string_list("media_urls", self.media_urls))
        hashes = tuple(v.string_list("media_hashes", self.media_hashes, max_length=256))
        if len(hashes) != len(urls):
            raise ValidationError("media_hashes", f"must hold one hash per media URL: {len(urls)} URLs, "
                                                  f"{len(hashes)} hashes")
        _set(self, "media_urls", urls)
        _set(self, "media_hashes", hashes)
        _set(self, "metadata", _metadata(self.metadata))

    @property
    def latitude(self) -> float:
        return self.geotag["lat"]

    @property
    def longitude(self) -> float:
        return self.geotag["lng"]

    @classmethod
    def coerce(cls, value: object, *, what: str = "report") -> RawIncidentReport:
        """``value`` itself when it is a ``RawIncidentReport``, else one built from a mapping or dataclass.

        The protocol's ``report_id`` is read as ``external_id`` when it is not a UUID (a UUID is this store's
        own key and cannot be chosen by a writer). Raises ``ValidationError``.

        Example: ``RawIncidentReport.coerce({"report_id": "app-123", "text_description": "...", ...})``
        """
        if isinstance(value, cls):
            return value
        data = _as_mapping(cls, value, what)
        if "report_id" in data:
            report_id = data.pop("report_id")
            is_uuid = isinstance(report_id, uuid.UUID)
            if isinstance(report_id, str):
                try:
                    uuid.UUID(report_id)
                    is_uuid = True
                except ValueError:
                    pass
            if not is_uuid and report_id is not None:
                if data.get("external_id") not in (None, report_id):
                    raise ValidationError("report_id", "differs from external_id; give only one source id")
                data["external_id"] = report_id
            elif "external_id" not in data:
                raise ValidationError("external_id", "is required (report_id is a UUID, the store's own key; "
                                                     "give the source's id as external_id)")
        _location(data)
        for key in ("media_urls", "media_hashes"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        return _build(cls, data, cls.ALIASES)


@dataclass(frozen=True, slots=True)
class CrimeEvent:
    """A crime event produced by a miner from one or more raw reports (input of ``store_crime_event``).

    ``event_type``: a lower-case word. ``geotag``: ``{"lat": .., "lng": ..}``. ``timestamp``: timezone-aware, at
    most 5 minutes in the future. ``severity``: integer 1..5. ``confidence_score`` and ``risk_score``: 0..1.
    ``related_reports``: ``report_id`` UUIDs of stored raw reports (duplicates dropped). ``verification_status``:
    ``pending`` (default), ``verified``, ``disputed`` or ``rejected``. ``event_id``: optional, chosen by the
    writer (a UUID; storing the same id twice is a ``ConflictError``).

    Raises ``ValidationError`` naming the field, e.g. ``severity: must be at most 5, got 7``.
    """

    event_type: str
    geotag: Mapping[str, float]
    timestamp: dt.datetime
    severity: int
    confidence_score: float
    title: str | None = None
    summary: str | None = None
    related_reports: tuple[uuid.UUID, ...] = ()
    cluster_id: uuid.UUID | None = None
    risk_score: float | None = None
    verification_status: str = "pending"
    metadata: Mapping[str, object] = field(default_factory=dict)
    event_id: uuid.UUID | None = None

    ALIASES: ClassVar[Mapping[str, str]] = {"crime_type": "event_type", "description": "summary",
                                            "confidence": "confidence_score"}

    def __post_init__(self) -> None:
        # The bulk path validates every row: values already in their clean form skip the general validators
        # (each fast test accepts only what the validator would accept unchanged).
        _set(self, "event_type", _slug("event_type", self.event_type))
        _set(self, "geotag", _geotag(self.geotag))
        _set(self, "timestamp", v.aware_datetime("timestamp", self.timestamp))
        if type(self.severity) is not int or not 1 <= self.severity <= 5:  # noqa: E721 - bool is refused
            _set(self, "severity", v.severity("severity", self.severity))
        if type(self.confidence_score) is not float or not 0.0 <= self.confidence_score <= 1.0:  # noqa: E721
            _set(self, "confidence_score", v.unit_interval("confidence_score", self.confidence_score))
        if self.title is not None:
            _set(self, "title", v.text("title", self.title, max_length=500))
        if self.summary is not None:
            _set(self, "summary", v.text("summary", self.summary))
        if self.related_reports or self.related_reports is None or type(self.related_reports) is not tuple:  # noqa: E721
            _set(self, "related_reports", tuple(v.uuid_list("related_reports", self.related_reports)))
        if self.cluster_id is not None:
            _set(self, "cluster_id", v.uuid_value("cluster_id", self.cluster_id))
        if self.risk_score is not None:
            _set(self, "risk_score", v.unit_interval("risk_score", self.risk_score))
        if self.verification_status not in VERIFICATION_STATUSES:
            v.choice("verification_status", self.verification_status, VERIFICATION_STATUSES)
        _set(self, "metadata", _metadata(self.metadata))
        if self.event_id is not None:
            _set(self, "event_id", v.uuid_value("event_id", self.event_id))

    @property
    def latitude(self) -> float:
        return self.geotag["lat"]

    @property
    def longitude(self) -> float:
        return self.geotag["lng"]

    @classmethod
    def coerce(cls, value: object, *, what: str = "crime_event") -> CrimeEvent:
        """``value`` itself when it is a ``CrimeEvent``, else one built from a mapping or dataclass (aliases in the
        module's table). Raises ``ValidationError``.

        Example: ``CrimeEvent.coerce({"crime_type": "theft", "geotag": {...}, "timestamp": ..., ...})``
        """
        if isinstance(value, cls):
            return value
        data = _as_mapping(cls, value, what)
        _location(data)
        if isinstance(data.get("related_reports"), list):
            data["related_reports"] = tuple(data["related_reports"])
        return _build(cls, data, cls.ALIASES)


# -- records ------------------------------------------------------------------------------------------------------
# Plain slotted dataclasses (not frozen): a query builds them by the hundred, and a frozen one costs ten times more
# to build. Their fields are in the order of the repositories' SELECT lists, so rows map to them by position.
@dataclass(slots=True)
class RawReportRecord:
    """A stored raw report. ``status`` is one of ``REPORT_STATUSES``; ``claimed_by`` is the miner uid that claimed it
    and ``processing_attempts`` counts the claims."""

    report_id: uuid.UUID
    external_id: str
    reporter_id: str | None
    crime_type: str | None
    description: str
    latitude: float
    longitude: float
    timestamp: dt.datetime
    media_urls: list[str]
    media_hashes: list[str]
    metadata: dict[str, object]
    status: str
    processing_attempts: int
    claimed_by: int | None
    claimed_at: dt.datetime | None
    processed_at: dt.datetime | None
    error_message: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def geotag(self) -> dict[str, float]:
        """The location as the nodes' protocol writes it: ``{"lat": .., "lng": ..}``."""
        return {"lat": self.latitude, "lng": self.longitude}


@dataclass(slots=True)
class CrimeEventRecord:
    """A stored crime event. ``distance_m`` (metres from the query's point) is set by radius queries only."""

    event_id: uuid.UUID
    miner_uid: int
    event_type: str
    title: str | None
    summary: str | None
    latitude: float
    longitude: float
    timestamp: dt.datetime
    severity: int
    confidence_score: float
    related_reports: list[uuid.UUID]
    cluster_id: uuid.UUID | None
    verification_status: str
    verified_by: int | None
    verification_score: float | None
    verified_at: dt.datetime | None
    risk_score: float | None
    metadata: dict[str, object]
    created_at: dt.datetime
    updated_at: dt.datetime
    distance_m: float | None = None

    @property
    def geotag(self) -> dict[str, float]:
        """The location as the nodes' protocol writes it: ``{"lat": .., "lng": ..}``."""
        return {"lat": self.latitude, "lng": self.longitude}


@dataclass(slots=True)
class Hotspot:
    """A square cell of ``cell_degrees`` (0.01° ≈ 1.1 km) holding verified events of the period.

    ``latitude``/``longitude`` are the cell's centre; ``avg_severity`` is rounded to 2 decimals; ``crime_types``
    sorted; ``first_seen``/``last_seen`` the oldest and newest event's time.
    """

    latitude: float
    longitude: float
    incident_count: int
    avg_severity: float
    max_severity: int
    crime_types: list[str]
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(slots=True)
class DatabaseStats:
    """Counts of the whole database. ``verification_rate`` is the percentage (0..100, 2 decimals) of crime events
    whose status is ``verified`` (0 without events); ``active_*`` count rows with ``is_active``."""

    raw_reports: int
    pending_reports: int
    crime_events: int
    verified_events: int
    verification_rate: float
    active_miners: int
    active_validators: int


# --- scoring records (miners, validators, consensus, clusters, zones, audit) ---
# Records of the scoring tables. Rows become these dataclasses through ``psycopg.rows.class_row``: the field names are
# the column names of the repositories' queries. Percentages are named ``*_rate`` and lie in [0, 100]; scores,
# accuracies and shares lie in [0, 1].
# This section's imports stay here, beside the classes that use them (the section above is edited separately).
from dataclasses import dataclass  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import Any  # noqa: E402
from uuid import UUID  # noqa: E402


@dataclass(frozen=True)
class MinerPerformance:
    """One miner's record in ``miner_performance`` (the current registration of its uid).

    ``overall_score`` is the last round's mean of the four scores, ``avg_overall_score`` the mean over all rounds of
    this registration; a round is successful when its overall score is at least 0.5, and ``success_rate`` is
    ``100 * successful_rounds / total_rounds`` rounded to 2 decimals (0 before the first round).
    """

    miner_id: UUID
    miner_uid: int
    hotkey: str
    integrity_score: float
    clustering_score: float
    novelty_score: float
    quality_score: float
    overall_score: float
    avg_overall_score: float
    total_rounds: int
    successful_rounds: int
    success_rate: float
    is_active: bool
    registered_at: datetime
    last_active_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MinerRoundResult(MinerPerformance):
    """A miner's record right after ``MinerRepository.record_round``.

    ``created``: the uid was seen for the first time. ``reregistered``: the uid came with a new hotkey, so the
    record started afresh (the previous record is kept in ``audit_log`` as operation ``REREGISTER``).
    """

    created: bool
    reregistered: bool


@dataclass(frozen=True)
class MinerStats(MinerPerformance):
    """A miner's record plus its crime events: ``events_submitted`` counts the events stored under its uid,
    ``events_verified`` those whose verification status is ``verified``."""

    events_submitted: int
    events_verified: int


@dataclass(frozen=True)
class ActiveMiner:
    """A row of the ``active_miners`` view (``success_rate`` in percent, as in ``WHERE success_rate > 80``)."""

    miner_uid: int
    hotkey: str
    integrity_score: float
    clustering_score: float
    novelty_score: float
    quality_score: float
    overall_score: float
    avg_overall_score: float
    total_rounds: int
    successful_rounds: int
    success_rate: float
    registered_at: datetime
    last_active_at: datetime | None


@dataclass(frozen=True)
class ValidatorStats:
    """One validator's record in ``validator_performance``.

    ``consensus_accuracy`` is the share (0..1) of its validations that agreed with the consensus
    (``agreements / total_validations``); ``agreement_rate`` is the same in percent, rounded to 2 decimals.
    ``avg_score_given`` is the mean score it gave.
    """

    validator_id: UUID
    validator_uid: int
    hotkey: str
    total_validations: int
    agreements: int
    consensus_accuracy: float
    agreement_rate: float
    avg_score_given: float
    stake: float
    is_active: bool
    last_active_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ValidatorUpdate(ValidatorStats):
    """A validator's record right after ``ValidatorRepository.record_validation`` (``created`` / ``reregistered``
    as in ``MinerRoundResult``)."""

    created: bool
    reregistered: bool


@dataclass(frozen=True)
class ConsensusRecord:
    """One validator's scores of one event in one round (``final_score`` in [0, 1])."""

    record_id: UUID
    event_id: UUID
    validator_uid: int
    round_number: int
    scores: dict[str, Any]
    final_score: float
    created_at: datetime


@dataclass(frozen=True)
class ConsensusSummary:
    """How validators judged one event.

    Counts each validator once, by its latest round (or by the round asked for). ``mean_score``,
    ``stddev_score`` (population standard deviation: the spread), ``min_score`` and ``max_score`` describe their
    final scores; ``agreement`` is the share (0..1) of validators whose final score lies within
    ``agreement_tolerance`` of the mean. Score fields are ``None`` while no validator has scored the event.
    """

    event_id: UUID
    round_number: int | None
    validators: int
    mean_score: float | None
    stddev_score: float | None
    min_score: float | None
    max_score: float | None
    agreement: float | None
    agreement_tolerance: float


@dataclass(frozen=True)
class ConsensusAccuracy:
    """Network-wide agreement of validators over the last ``hours``.

    Every record of the window is compared with the mean final score of its event and round; ``agreement_rate`` is
    the percentage of records within ``agreement_tolerance`` of that mean (``None`` when the window holds no
    records).
    """

    hours: int
    records: int
    events: int
    validators: int
    agreement_rate: float | None
    agreement_tolerance: float


@dataclass(frozen=True)
class NewCrimeCluster:
    """Input of ``ClusterRepository.store`` (a plain mapping with the same keys is accepted too).

    ``centre`` is ``{"lat": .., "lng": ..}``; ``radius_m`` in metres (0 < r <= 1,000,000); ``avg_severity`` in
    1..5; ``time_start``/``time_end`` timezone-aware with ``time_end >= time_start``.
    """

    centre: dict[str, float]
    radius_m: float
    time_start: datetime
    time_end: datetime
    event_count: int = 0
    dominant_crime_type: str | None = None
    avg_severity: float | None = None
    miner_uid: int | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class CrimeCluster:
    """A stored crime cluster. ``distance_m`` is filled by ``ClusterRepository.near`` (metres from the point)."""

    cluster_id: UUID
    miner_uid: int | None
    latitude: float
    longitude: float
    radius_m: float
    event_count: int
    dominant_crime_type: str | None
    avg_severity: float | None
    time_start: datetime
    time_end: datetime
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    distance_m: float | None = None

    @property
    def centre(self) -> dict[str, float]:
        """The centre as the nodes' protocol writes it: ``{"lat": .., "lng": ..}``."""
        return {"lat": self.latitude, "lng": self.longitude}


@dataclass(frozen=True)
class NewRiskZone:
    """Input of ``RiskZoneRepository.store`` (a plain mapping with the same keys is accepted too).

    ``boundary`` is a list of at least three ``{"lat": .., "lng": ..}`` vertices (the ring is closed automatically)
    or a GeoJSON Polygon mapping (``{"type": "Polygon", "coordinates": [[[lng, lat], ...], ...]}``).
    ``risk_level`` in 1..5, ``risk_score`` in [0, 1]; ``valid_from`` defaults to now, ``valid_until`` to never.
    """

    name: str
    boundary: Any
    risk_level: int
    risk_score: float
    crime_types: list[str] | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class RiskZone:
    """A stored risk zone; ``boundary`` is a GeoJSON Polygon mapping (coordinates as ``[lng, lat]``)."""

    zone_id: UUID
    name: str
    boundary: dict[str, Any]
    risk_level: int
    risk_score: float
    crime_types: list[str]
    valid_from: datetime
    valid_until: datetime | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    """A row of ``audit_log``: ``operation`` is INSERT, UPDATE, DELETE or REREGISTER; ``old_data``/``new_data`` are
    the row before and after (``None`` where not applicable)."""

    audit_id: UUID
    table_name: str
    operation: str
    row_id: str | None
    actor: str
    old_data: dict[str, Any] | None
    new_data: dict[str, Any] | None
    occurred_at: datetime
