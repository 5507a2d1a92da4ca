"""Dataclasses for inputs and records (attribute access: ``event.event_id``, ``stats.success_rate``).

Inputs may also be given as plain mappings with the same field names; the facade accepts both.
"""

from __future__ import annotations

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
