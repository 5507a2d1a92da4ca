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
from typing import Any
from uuid import UUID

__all__ = [
    "Record",
    "RawReportRecord",
    "CrimeEventRecord",
    "Hotspot",
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
]


class Record:
    """Mapping access for a record dataclass: ``record["name"]``, ``record.get(name)``, ``keys()``, ``dict(record)``.

    ``record["nope"]`` raises ``KeyError``, as a mapping does; ``record.nope`` raises ``AttributeError``.
    """

    __slots__ = ()

    def keys(self) -> tuple[str, ...]:
        """The field names, in order."""
        return tuple(f.name for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        """The field's value, or ``default`` for a name that is not a field."""
        return getattr(self, key) if key in self.keys() else default

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` pairs, in field order."""
        return ((name, getattr(self, name)) for name in self.keys())

    def as_dict(self) -> dict[str, Any]:
        """A plain dict of the fields (values not copied)."""
        return dict(self.items())


class _Located(Record):
    """A record with ``latitude``/``longitude`` fields; ``geotag`` gives them as the nodes' protocol writes them."""

    __slots__ = ()

    @property
    def geotag(self) -> dict[str, float]:
        """The location as the nodes' protocol writes it: ``{"lat": .., "lng": ..}``."""
        return {"lat": self.latitude, "lng": self.longitude}  # type: ignore[attr-defined]


@dataclass(slots=True)
class RawReportRecord(_Located):
    """A stored raw report. ``status`` is one of ``REPORT_STATUSES``; ``claimed_by`` is the miner uid that claimed it
    and ``processing_attempts`` counts the claims."""

    report_id: UUID
    external_id: str
    reporter_id: str | None
    crime_type: str | None
    description: str
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


@dataclass(slots=True)
class CrimeEventRecord(_Located):
    """A stored crime event. ``distance_m`` (metres from the query's point) is set by radius queries only."""

    event_id: UUID
    miner_uid: int
    event_type: str
    title: str | None
    summary: str | None
    latitude: float
    longitude: float
    timestamp: datetime
    severity: int
    confidence_score: float
    related_reports: list[UUID]
    cluster_id: UUID | None
    verification_status: str
    verified_by: int | None
    verification_score: float | None
    verified_at: datetime | None
    risk_score: float | None
    metadata: dict[str, object]
    created_at: datetime
    updated_at: datetime
    distance_m: float | None = None


@dataclass(slots=True)
class Hotspot(Record):
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
    first_seen: datetime
    last_seen: datetime


@dataclass(slots=True)
class DatabaseStats(Record):
    """Counts of the whole database. ``verification_rate`` is the percentage (0..100, 2 decimals) of crime events
    whose status is ``verified`` (0 without events); ``active_*`` count rows with ``is_active``."""

    raw_reports: int
    pending_reports: int
    crime_events: int
    verified_events: int
    verification_rate: float
    active_miners: int
    active_validators: int


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
    record started afresh (the previous record is kept in ``audit_log`` as operation ``REREGISTER``).
    """

    created: bool
    reregistered: bool


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
    ``confidence_score`` in [0, 1]. ``distance_m`` (metres from the point) is set by
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
    distance_m: float | None = None

    centre = _Located.geotag  # a cluster's point is its centre


@dataclass(slots=True)
class RiskZone(Record):
    """A stored risk zone; ``boundary`` is a GeoJSON Polygon mapping (coordinates as ``[lng, lat]``).
    ``crime_density`` is in crimes per km² (``None`` when unknown), ``trend_direction`` increasing, decreasing or
    stable (or ``None``)."""

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


@dataclass(slots=True)
class AuditEntry(Record):
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
