"""Records: the rows queries return, one convention for all of them.

Every record is a slotted, mutable dataclass (a query builds them by the hundred, and a frozen one costs ten times
more to build) deriving from ``Record``, which adds mapping access beside attribute access::

    >>> hotspot.incident_count == hotspot["incident_count"]
    True
    >>> dict(hotspot)["avg_severity"]          # keys() and [] make dict(record) work
    3.5

Fields are named like the columns of the repositories' queries and, for the crime event and raw report records,
ordered like their SELECT lists, so rows map to them by position. Percentages are named ``*_rate`` and lie in
[0, 100]; scores, accuracies and shares lie in [0, 1].
"""

from __future__ import annotations

import dataclasses
import decimal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any, ClassVar
from uuid import UUID

from luminar_store.severity import word_of

__all__ = [
    "Record",
    "RawReportRecord",
    "CrimeEventRecord",
    "Hotspot",
    "SignificantHotspot",
    "DatabaseStats",
    "MinerPerformance",
    "MinerRoundResult",
    "MinerStats",
    "ActiveMiner",
    "ValidatorStats",
    "ValidatorUpdate",
    "ConsensusRecord",
    "ConsensusSummary",
    "ConsensusAccuracy",
    "CrimeCluster",
    "RiskZone",
    "AuditEntry",
    "ZoneAnalysis",
    "NearRepeat",
]


class Record:
    """Mapping access for a record dataclass: ``record["name"]``, ``record.get(name)``, ``keys()``, ``dict(record)``.

    ``record["nope"]`` raises ``KeyError``, as a mapping does; ``record.nope`` raises ``AttributeError``.
    ``DERIVED`` names properties computed from the fields (``CrimeEventRecord.severity``, the word of
    ``severity_level``); the mapping access lists them after the fields.
    """

    __slots__ = ()

    #: Properties that keys(), [], get(), items() and dict(record) include after the fields, in this order.
    DERIVED: ClassVar[tuple[str, ...]] = ()

    def keys(self) -> tuple[str, ...]:
        """The field names, in order, then the ``DERIVED`` property names."""
        return tuple(f.name for f in dataclasses.fields(self)) + self.DERIVED  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        """The field's (or derived property's) value, or ``default`` for any other name."""
        return getattr(self, key) if key in self.keys() else default

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` pairs, in ``keys()`` order."""
        return ((name, getattr(self, name)) for name in self.keys())

    def values(self) -> Iterator[Any]:
        """The values, in ``keys()`` order."""
        return (getattr(self, name) for name in self.keys())

    def __iter__(self) -> Iterator[str]:
        """The names, as iterating a mapping gives (``for key in record``, ``list(record)``)."""
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def as_dict(self) -> dict[str, Any]:
        """A plain dict of the fields and derived properties (values not copied)."""
        return dict(self.items())


class _Located(Record):
    """A record with ``latitude``/``longitude`` fields; ``geotag`` gives them as the nodes' protocol writes them."""

    __slots__ = ()

    @property
    def geotag(self) -> dict[str, float] | None:
        """The location as the nodes' protocol writes it: ``{"lat": .., "lng": ..}``; ``None`` for an unlocated
        crime event (latitude and longitude NULL)."""
        if self.latitude is None:  # type: ignore[attr-defined]
            return None
        return {"lat": self.latitude, "lng": self.longitude}  # type: ignore[attr-defined]


@dataclass(slots=True)
class RawReportRecord(_Located):
    """A stored raw report. ``status`` is one of ``REPORT_STATUSES``; ``claimed_by`` is the miner uid that claimed it
    and ``processing_attempts`` counts the claims. ``user_id`` is the (anonymous) reporter, ``source`` the data
    source identifier (``mobile_app`` unless the writer said otherwise)."""

    report_id: UUID
    external_id: str
    user_id: str | None
    crime_type: str | None
    text_description: str
    latitude: float
    longitude: float
    timestamp: datetime
    media_urls: list[str]
    media_hashes: list[str]
    metadata: dict[str, object]
    status: str
    processing_attempts: int
    claimed_by: int | None
    claimed_at: datetime | None
    processed_at: datetime | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime
    source: str


@dataclass(slots=True)
class CrimeEventRecord(_Located):
    """A stored crime event. ``distance_m`` (metres from the query's point) is set by radius queries only.

    ``severity_level`` is the stored level 1..5; ``severity`` (a derived key too) its word, ``low``, ``medium`` or
    ``high`` (``luminar_store.severity.word_of``). ``validator_uid`` is the validator of the last verdict.
    An *unlocated* event (a text-flow event awaiting geocoding) has ``latitude``, ``longitude``, ``location_source``
    and ``geotag`` ``None``. ``timestamp_source`` says where ``timestamp`` came from (``event``, ``source_reports``,
    ``stored``), ``location_source`` where the point came from (``event``, ``source_reports``, ``geocoded``);
    ``location_text``/``time_info`` are the free-text place and time, ``time_end`` the end of the event's time
    range, ``entities`` a list, ``request_id`` the text flow's request id.
    """

    DERIVED: ClassVar[tuple[str, ...]] = ("severity",)

    event_id: UUID
    miner_uid: int
    event_type: str
    title: str | None
    summary: str | None
    latitude: float | None
    longitude: float | None
    timestamp: datetime
    severity_level: int
    confidence_score: float
    related_reports: list[UUID]
    cluster_id: UUID | None
    verification_status: str
    validator_uid: int | None
    verification_score: float | None
    verified_at: datetime | None
    risk_score: float | None
    metadata: dict[str, object]
    created_at: datetime
    updated_at: datetime
    location_text: str | None
    time_info: str | None
    entities: list[Any]
    time_end: datetime | None
    timestamp_source: str
    location_source: str | None
    request_id: str | None
    distance_m: float | None = None

    @property
    def severity(self) -> str | None:
        """The severity word of ``severity_level`` (``low``, ``medium``, ``high``)."""
        return word_of(self.severity_level)


@dataclass(slots=True)
class Hotspot(Record):
    """A square equal-area cell of ``cell_m`` metres (default 400; the cells of the Gi* analysis) holding verified
    incidents of the period.

    ``incident_count`` counts incidents, not events: the events of several miners sharing their lowest related
    report count once (the schema's ``crime_incidents``), placed at the event consensus chose.
    ``latitude``/``longitude`` are the cell's centre (rounded to 6 decimals); ``avg_severity`` is rounded to 2
    decimals (incidents without a severity left out; ``None`` when none has one, as ``max_severity``);
    ``crime_types`` sorted; ``first_seen``/``last_seen`` the oldest and newest incident's time.
    """

    latitude: float
    longitude: float
    incident_count: int
    avg_severity: float | None
    max_severity: int | None
    crime_types: list[str]
    first_seen: datetime
    last_seen: datetime


@dataclass(slots=True)
class SignificantHotspot(Record):
    """One equal-area cell of the Getis-Ord Gi* analysis (the schema's ``luminar_gistar(days, cell_m)``).

    ``cell_row``/``cell_col`` name the square of ``cell_m`` metres in EPSG:6933; ``latitude``/``longitude`` its
    centre (6 decimals). ``incidents`` counted in it, ``neighbours`` the cells of its 3 x 3 block in the grid (itself
    included). ``z`` the Gi* z-score and ``p`` its one-tailed normal p-value (as PySAL esda's ``p_norm``), ``q`` the
    Benjamini-Hochberg adjusted two-sided p-value; all three ``None`` when undefined. ``confidence`` is 99, 95, 90
    (``q`` at most 0.01, 0.05, 0.10) or 0; ``gi_bin`` -3..3 (sign of ``z`` times the level); ``classification``
    (the SQL column ``class``) reads ``"hot"``, ``"cold"`` or ``"not significant"``. ``computed_at``: when the
    analysis ran (the last ``luminar-db analyze`` while fresh, else the call itself).
    """

    cell_row: int
    cell_col: int
    latitude: float
    longitude: float
    incidents: int
    neighbours: int
    z: float | None
    p: float | None
    q: float | None
    confidence: int
    gi_bin: int
    classification: str
    computed_at: datetime | None = None


@dataclass(slots=True)
class DatabaseStats(Record):
    """Counts of the whole database. ``verification_rate`` is the percentage (0..100, 2 decimals) of crime events
    whose status is ``verified`` (0 without events); ``active_*`` count rows with ``is_active``.

    ``avg_processing_time``: the mean time in seconds from a report's arrival (its ``created_at``) to its first
    crime event (the earliest ``created_at`` of the events whose ``related_reports`` contain it), over the reports
    that have an event; 0.0 when none has.

    The reference node code's field names answer too, as attributes and keys: ``total_reports`` (=
    ``raw_reports``) and ``processed_events`` (= ``crime_events``); ``active_miners``, ``active_validators``,
    ``verification_rate`` and ``avg_processing_time`` are shared.
    """

    raw_reports: int
    pending_reports: int
    crime_events: int
    verified_events: int
    verification_rate: float
    active_miners: int
    active_validators: int
    avg_processing_time: float = 0.0

    @property
    def total_reports(self) -> int:
        """The reference's name of ``raw_reports``."""
        return self.raw_reports

    @property
    def processed_events(self) -> int:
        """The reference's name of ``crime_events``."""
        return self.crime_events

    DERIVED: ClassVar[tuple[str, ...]] = ("total_reports", "processed_events")


@dataclass(slots=True)
class ActiveMiner(Record):
    """A row of the ``active_miners`` view (``success_rate`` in percent, as in ``WHERE success_rate > 80``): a
    miner's figures, which ``MinerPerformance`` extends with the record's identity and bookkeeping.

    ``overall_score`` is the last round's mean of the four scores, ``avg_overall_score`` the mean over all rounds of
    this registration; a round is successful when its overall score is at least 0.5, and ``success_rate`` is
    ``100 * successful_rounds / total_rounds`` rounded to 2 decimals (0 before the first round).

    The network's figures follow: ``total_score`` is the sum of the overall scores of this registration's rounds;
    ``processed_reports`` counts the raw reports the uid's claims brought to ``processed``, ``verified_events``
    its crime events whose status is ``verified`` (both kept by the schema's triggers); ``stake_amount`` is in TAO
    (``Decimal``, ``None`` when unknown).
    """

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
    last_activity: datetime | None
    total_score: float
    processed_reports: int
    verified_events: int
    stake_amount: decimal.Decimal | None


@dataclass(slots=True)
class MinerPerformance(ActiveMiner):
    """One miner's record in ``miner_performance`` (the current registration of its uid): the figures of
    ``ActiveMiner``, then ``coldkey``, ``miner_id``, ``is_active`` and the row's timestamps."""

    coldkey: str | None
    miner_id: UUID
    is_active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class MinerRoundResult(MinerPerformance):
    """A miner's record right after ``MinerRepository.record_round``.

    ``created``: the uid was seen for the first time. ``reregistered``: the uid came with a new hotkey, so the
    record started afresh (the previous record is kept in ``audit_log`` as operation ``REREGISTER``). ``counted``:
    the round was counted now; False when its round key had been counted before (a retry: the record is returned
    unchanged).
    """

    created: bool
    reregistered: bool
    counted: bool = True


@dataclass(slots=True)
class MinerStats(MinerPerformance):
    """A miner's record plus its crime events: ``events_submitted`` counts the events stored under its uid,
    ``events_verified`` those whose verification status is ``verified``."""

    events_submitted: int
    events_verified: int


@dataclass(slots=True)
class ValidatorStats(Record):
    """One validator's record in ``validator_performance``.

    ``consensus_accuracy`` is the share (0..1) of its validations that agreed with the consensus
    (``agreements / validated_events``); ``agreement_rate`` is the same in percent, rounded to 2 decimals.
    ``avg_score_given`` is the mean score it gave; ``stake_amount`` its stake in TAO.
    """

    validator_id: UUID
    validator_uid: int
    hotkey: str
    validated_events: int
    agreements: int
    consensus_accuracy: float
    agreement_rate: float
    avg_score_given: float
    stake_amount: float
    is_active: bool
    last_activity: datetime | None
    coldkey: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class ValidatorUpdate(ValidatorStats):
    """A validator's record right after ``ValidatorRepository.record_validation`` (``created`` / ``reregistered``
    as in ``MinerRoundResult``)."""

    created: bool
    reregistered: bool


@dataclass(slots=True)
class ConsensusRecord(Record):
    """One validator's scores of one event in one round (``final_score`` in [0, 1]). ``integrity_score``,
    ``clustering_score``, ``novelty_score`` and ``quality_score`` are the numbers under those keys of ``scores``
    (``None`` where absent or not a number), generated by the table."""

    record_id: UUID
    event_id: UUID
    validator_uid: int
    consensus_round: int
    scores: dict[str, Any]
    final_score: float
    created_at: datetime
    integrity_score: float | None
    clustering_score: float | None
    novelty_score: float | None
    quality_score: float | None


@dataclass(slots=True)
class ConsensusSummary(Record):
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


@dataclass(slots=True)
class ConsensusAccuracy(Record):
    """Network-wide agreement of validators over the last ``hours``: the SQL function
    ``consensus_agreement(since, tolerance)``, the one definition the statistics command reads too.

    ``records``, ``events`` and ``validators`` count the window's consensus records. The records of one event and
    round are compared with their mean final score; only rounds judged by at least two validators are compared
    (``compared``). ``agreement_rate`` is the percentage of compared records within ``agreement_tolerance`` of
    their round's mean (``None`` when nothing was compared).
    """

    hours: int
    records: int
    events: int
    validators: int
    agreement_rate: float | None
    agreement_tolerance: float
    compared: int = 0


@dataclass(slots=True)
class CrimeCluster(_Located):
    """A stored crime cluster. ``cluster_type`` is geographic, temporal or behavioral (or ``None``),
    ``confidence_score`` in [0, 1]. ``made_by`` is ``"node"`` (a miner stored it) or ``"analysis"`` (the database's
    DBSCAN run, ``luminar_store.analysis.clusters``: then ``event_count`` counts incidents, and ``metadata`` holds the
    run's parameters and ``events``). ``distance_m`` (metres from the point) is set by
    ``ClusterRepository.within_radius`` only."""

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
    cluster_type: str | None
    confidence_score: float | None
    pattern_description: str | None
    made_by: str = "node"
    distance_m: float | None = None

    centre = _Located.geotag  # a cluster's point is its centre


@dataclass(slots=True)
class RiskZone(Record):
    """A stored risk zone; ``boundary`` is a GeoJSON Polygon mapping (coordinates as ``[lng, lat]``).
    ``crime_density`` is in crimes per km² (``None`` when unknown), ``trend_direction`` increasing, decreasing,
    stable or insufficient data (or ``None``), ``trend_p_value`` its Mann-Kendall p-value (``None`` when not
    tested). ``made_by`` is ``"node"`` for a zone a node stored, ``"analysis"`` for one made by the risk zone
    analysis (the schema's ``luminar_analyze_risk_zones``; a re-run replaces those)."""

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
    crime_density: float | None
    recent_incidents: int
    trend_direction: str | None
    trend_p_value: float | None = None
    made_by: str = "node"


@dataclass(slots=True)
class AuditEntry(Record):
    """A row of ``audit_log``: ``operation`` is INSERT, UPDATE, DELETE or REREGISTER; ``old_data``/``new_data`` are
    the row before and after (``None`` where not applicable).

    Who: ``actor`` (the login), ``node_uids`` (its uids in ``node_identities``, ``None`` for none), ``client_addr``
    (``None`` over a Unix socket), ``application_name``, ``transaction_id``. An INSERT entry stands for one statement:
    ``row_count`` rows, their keys in ``row_ids`` (``row_id`` set when it was one row); so does a DELETE by
    retention (keys only). UPDATE, DELETE and REREGISTER entries are one a row (``row_count``/``row_ids`` ``None``).
    """

    audit_id: UUID
    table_name: str
    operation: str
    row_id: str | None
    actor: str
    old_data: dict[str, Any] | None
    new_data: dict[str, Any] | None
    occurred_at: datetime
    node_uids: list[int] | None = None
    client_addr: IPv4Address | IPv6Address | None = None
    application_name: str | None = None
    transaction_id: int | None = None
    row_count: int | None = None
    row_ids: list[str] | None = None


@dataclass(slots=True)
class ZoneAnalysis(Record):
    """What one run of the risk zone analysis (``luminar_analyze_risk_zones``) did: ``zones`` made, from
    ``hot_cells`` hot cells in ``regions`` regions, over ``incidents`` incidents of its Gi* window; ``replaced`` the
    previous analysis zones it deleted; ``weeks`` the weekly counts its trend tests read (fewer than 8: every zone's
    trend is "insufficient data")."""

    zones: int
    hot_cells: int
    regions: int
    incidents: int
    replaced: int
    weeks: int


@dataclass(slots=True)
class NearRepeat(_Located):
    """An incident that followed an earlier incident of the same type nearby, at another address (a near repeat;
    ``luminar_store.analysis.near_repeats``). ``event_id`` is the incident's representative event (``latitude``,
    ``longitude``, ``timestamp``, ``event_type`` are its), ``earlier_event_id`` the earlier incident's (its point and
    time in ``earlier_latitude``, ``earlier_longitude``, ``earlier_timestamp``); ``distance_m`` between them
    (great-circle metres), ``hours_after``; ``parameters`` the run's (``window_days``, ``distance_m``, ``hours``,
    ``same_address_m``); ``computed_at`` when the flag was written as it is."""

    event_id: UUID
    earlier_event_id: UUID
    event_type: str
    latitude: float
    longitude: float
    timestamp: datetime
    earlier_latitude: float
    earlier_longitude: float
    earlier_timestamp: datetime
    distance_m: float
    hours_after: float
    parameters: dict[str, Any]
    computed_at: datetime
