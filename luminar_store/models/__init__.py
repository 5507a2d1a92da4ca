"""Dataclasses of the data layer, by role: ``inputs`` (validated once, at construction, in the protocol's shapes)
and ``records`` (the rows queries return, with attribute and mapping access).

Every name importable from ``luminar_store.models`` before the split still is.

Example::

    from luminar_store.models import CrimeEvent, CrimeEventRecord
"""

from luminar_store.models.inputs import (
    REPORT_STATUSES,
    VERIFICATION_STATUSES,
    CrimeEvent,
    NewCrimeCluster,
    NewRiskZone,
    RawIncidentReport,
    boundary_geojson,
)
from luminar_store.models.records import (
    ActiveMiner,
    AuditEntry,
    ConsensusAccuracy,
    ConsensusRecord,
    ConsensusSummary,
    CrimeCluster,
    CrimeEventRecord,
    DatabaseStats,
    Hotspot,
    MinerPerformance,
    MinerRoundResult,
    MinerStats,
    RawReportRecord,
    Record,
    RiskZone,
    ValidatorStats,
    ValidatorUpdate,
)

__all__ = [
    "REPORT_STATUSES",
    "VERIFICATION_STATUSES",
    "RawIncidentReport",
    "CrimeEvent",
    "NewCrimeCluster",
    "NewRiskZone",
    "boundary_geojson",
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
