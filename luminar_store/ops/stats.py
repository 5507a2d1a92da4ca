"""The specification's key metrics of the network, read from the database in a handful of aggregate queries.

The figures over reports and events are SQL functions (migration 20261130045300: ``luminar_stats_reports``,
``_events``, ``_throughput``, ``_agreement``, ``_coverage``), so ``luminar-db metrics``, which reads as the monitor
role (no right on a report or an event row), and the Grafana dashboard read the very same definitions.

- processing throughput: reports settled (processed or rejected) per hour over the last ``hours`` (24), next to
  reports received per hour;
- consensus accuracy: the schema's ``consensus_agreement`` over the last ``days`` (7), the one definition the
  consensus repository reads too: of the validators' scores of rounds scored by at least two validators, the share
  within ``AGREEMENT_TOLERANCE`` (0.1, ``luminar_store.limits``) of that round's mean score; and the lifetime
  agreement recorded in ``validator_performance`` (agreements / validations of active validators);
- geographic coverage: events per region, the region read from the event's position with the boxes of
  ``luminar_stats_coverage()`` (continents, roughly: the Americas split at Panama, Europe north of 35°N and west
  of 45°E, Africa below 37.5°N without Arabia, Oceania east of 110°E and south of the equator, the rest of the land
  east of 25°E is Asia; anything else is ``Other``; events without a position yet are ``Unlocated``);
- miner performance: the ``active_miners`` view's success rates (share of rounds scoring at least 0.5);
- active nodes: the specification's count of active miners, with active validators beside it.

Example::

    >>> from luminar_store.ops.connect import connect
    >>> with connect(settings) as conn:
    ...     print(format_stats(collect_stats(conn)))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import psycopg

from luminar_store.errors import OperationError
from luminar_store.limits import AGREEMENT_TOLERANCE, DEFAULT_CELL_M
from luminar_store.models import Hotspot
from luminar_store.repositories.crime_events import hotspot_query, record_row

__all__ = ["AGREEMENT_TOLERANCE", "COVERAGE", "NetworkStats", "collect_stats", "require_stats_functions",
           "format_stats", "recent_events", "top_hotspots", "format_recent_events", "format_hotspots"]

# The figures over reports and events are SQL functions of migration 20261130045300 (one definition each, read
# alike by this module as the owner, by `luminar-db metrics` as the monitor and by the Grafana dashboard).
REPORTS_BY_STATUS = "SELECT status, reports FROM luminar_stats_reports()"
EVENTS_BY_STATUS = "SELECT verification_status, events FROM luminar_stats_events()"
# Settled = processed or rejected: both took a miner's work. One bucket: the whole window [now - hours, now).
THROUGHPUT = """
SELECT coalesce(sum(settled), 0)::bigint, coalesce(sum(received), 0)::bigint
  FROM luminar_stats_throughput(now() - make_interval(hours => %(hours)s), now(),
                                make_interval(hours => %(hours)s))
"""
# The network's consensus accuracy: the schema's one definition (see consensus_agreement in the migrations).
AGREEMENT = """
SELECT compared, agreeing, agreement_rate
  FROM luminar_stats_agreement(now() - make_interval(days => %(days)s), %(tolerance)s)
"""
VALIDATORS = """
SELECT count(*) FILTER (WHERE is_active),
       count(*),
       sum(agreements) FILTER (WHERE is_active)::double precision
         / nullif(sum(validated_events) FILTER (WHERE is_active), 0)
  FROM validator_performance
"""
# Regions are rough continent boxes, tried in this order (see the module text and luminar_stats_coverage).
COVERAGE = "SELECT region, events, verified FROM luminar_stats_coverage()"
MINERS = """
SELECT (SELECT count(*) FROM miner_performance),
       count(*),
       round(avg(success_rate), 2),
       round(min(success_rate), 2),
       round(max(success_rate), 2),
       round(avg(avg_overall_score)::numeric, 4)
  FROM active_miners
"""
TOP_MINERS = """
SELECT miner_uid, success_rate, round(avg_overall_score::numeric, 4), total_rounds
  FROM active_miners
 ORDER BY success_rate DESC, avg_overall_score DESC, miner_uid
 LIMIT %(limit)s
"""
RECENT_EVENTS = """
SELECT "timestamp", event_type, severity_level, verification_status, coalesce(metadata->>'city', ''), title
  FROM crime_events
 ORDER BY "timestamp" DESC
 LIMIT %(limit)s
"""
# The newest of the functions above (migration 20261130045300): absent on a database migrated before it.
STATS_FUNCTIONS_PRESENT = "SELECT to_regprocedure('luminar_stats_coverage()') IS NOT NULL"


def require_stats_functions(conn: psycopg.Connection, database: str) -> None:
    """``OperationError`` naming the fix when the database predates the statistics functions (or has no schema)."""
    if not conn.execute(STATS_FUNCTIONS_PRESENT).fetchone()[0]:
        raise OperationError(f"database {database} has no statistics functions (migration 20261130045300); "
                             "run: luminar-db migrate")


@dataclass
class NetworkStats:
    """The metrics at ``generated_at``; rates are per hour, shares in percent (None when nothing to measure)."""

    generated_at: str
    reports_total: int
    reports_by_status: dict[str, int]
    events_total: int
    events_by_status: dict[str, int]
    window_hours: int
    processed_per_hour: float
    received_per_hour: float
    consensus_window_days: int
    consensus_records_compared: int
    consensus_agreement_pct: float | None
    validator_accuracy_pct: float | None
    coverage: list[dict[str, object]] = field(default_factory=list)
    miners_total: int = 0
    active_miners: int = 0
    miner_success_rate_avg: float | None = None
    miner_success_rate_min: float | None = None
    miner_success_rate_max: float | None = None
    miner_avg_score: float | None = None
    top_miners: list[dict[str, object]] = field(default_factory=list)
    active_validators: int = 0
    validators_total: int = 0
    active_nodes: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _pct(part: float, whole: float) -> float | None:
    """``100 * part / whole`` with 2 decimals; ``None`` when ``whole`` is 0."""
    return round(100.0 * part / whole, 2) if whole else None


def _num(value) -> float | None:
    return None if value is None else float(value)


def collect_stats(conn: psycopg.Connection, *, hours: int = 24, days: int = 7, top: int = 5) -> NetworkStats:
    """Read every metric through ``conn`` (a few seconds at a million reports). Raises ``psycopg.Error`` when
    the schema is missing."""
    reports = dict(conn.execute(REPORTS_BY_STATUS).fetchall())
    events = dict(conn.execute(EVENTS_BY_STATUS).fetchall())
    settled, received = conn.execute(THROUGHPUT, {"hours": hours}).fetchone()
    compared, _agreeing, agreement_pct = conn.execute(AGREEMENT, {"days": days,
                                                                  "tolerance": AGREEMENT_TOLERANCE}).fetchone()
    active_validators, validators_total, accuracy = conn.execute(VALIDATORS).fetchone()
    coverage = [{"region": region, "events": count, "verified": verified,
                 "share_pct": _pct(count, sum(events.values()))}
                for region, count, verified in conn.execute(COVERAGE).fetchall()]
    miners_total, active, avg_rate, min_rate, max_rate, avg_score = conn.execute(MINERS).fetchone()
    top_miners = [{"miner_uid": uid, "success_rate": float(rate), "avg_score": float(score), "rounds": rounds}
                  for uid, rate, score, rounds in conn.execute(TOP_MINERS, {"limit": top}).fetchall()]
    return NetworkStats(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        reports_total=sum(reports.values()), reports_by_status=reports,
        events_total=sum(events.values()), events_by_status=events,
        window_hours=hours, processed_per_hour=round(settled / hours, 1), received_per_hour=round(received / hours, 1),
        consensus_window_days=days, consensus_records_compared=compared,
        consensus_agreement_pct=agreement_pct,
        validator_accuracy_pct=None if accuracy is None else round(100.0 * accuracy, 2),
        coverage=coverage, miners_total=miners_total, active_miners=active,
        miner_success_rate_avg=_num(avg_rate), miner_success_rate_min=_num(min_rate),
        miner_success_rate_max=_num(max_rate), miner_avg_score=_num(avg_score), top_miners=top_miners,
        active_validators=active_validators, validators_total=validators_total, active_nodes=active,
    )


def _show(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.2f}{unit}"


def format_stats(s: NetworkStats) -> str:
    """The metrics as an aligned, readable table."""
    by_status = lambda d: ", ".join(f"{k} {v:,}" for k, v in d.items()) or "none"  # noqa: E731
    rows = [
        ("reports", f"{s.reports_total:,} ({by_status(s.reports_by_status)})"),
        ("events", f"{s.events_total:,} ({by_status(s.events_by_status)})"),
        (f"throughput ({s.window_hours} h)", f"{s.processed_per_hour:,.1f} reports/hour processed, "
                                             f"{s.received_per_hour:,.1f} received"),
        (f"consensus accuracy ({s.consensus_window_days} d)",
         f"{_show(s.consensus_agreement_pct, ' %')} of {s.consensus_records_compared:,} validator scores within "
         f"{AGREEMENT_TOLERANCE} of the round's mean"),
        ("validator accuracy", f"{_show(s.validator_accuracy_pct, ' %')} (lifetime, active validators)"),
        ("miner success rate", f"avg {_show(s.miner_success_rate_avg, ' %')}, min "
                               f"{_show(s.miner_success_rate_min, ' %')}, max {_show(s.miner_success_rate_max, ' %')}"),
        ("active nodes", f"{s.active_nodes} miners of {s.miners_total}, {s.active_validators} validators of "
                         f"{s.validators_total}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("geographic coverage (events by region):")
    for c in s.coverage or [{"region": "none", "events": 0, "verified": 0, "share_pct": None}]:
        lines.append(f"  {str(c['region']).ljust(14)} {c['events']:>10,}  {_show(c['share_pct'], ' %'):>9}  "
                     f"({c['verified']:,} verified)")
    if s.top_miners:
        lines.append("top miners (uid: success rate, average score, rounds):")
        for m in s.top_miners:
            lines.append(f"  {m['miner_uid']:>5}: {m['success_rate']:6.2f} %  {m['avg_score']:.4f}  {m['rounds']:,}")
    return "\n".join(lines)


def recent_events(conn: psycopg.Connection, limit: int = 5) -> list[tuple]:
    """The newest events: (timestamp, type, severity level, verification status, city, title)."""
    return conn.execute(RECENT_EVENTS, {"limit": limit}).fetchall()


def top_hotspots(conn: psycopg.Connection, limit: int = 5, days: int = 7) -> list[tuple]:
    """The busiest hotspot cells (equal-area, 400 m) of verified incidents of the last ``days`` days, in the one
    hotspot order (``crime_events.HOTSPOT_ORDER``: most incidents, then most recent): (latitude, longitude,
    incidents, average severity, crime types, last seen). The query is ``crime_events.hotspot_query``'s, the
    facade's own. Raises ``ValidationError`` for ``days`` or ``limit`` out of range, ``psycopg.Error`` when the
    schema is missing."""
    query, params = hotspot_query(days, limit=limit)
    with conn.cursor(row_factory=record_row(Hotspot)) as cur:
        spots = cur.execute(query, params, binary=True).fetchall()
    return [(h.latitude, h.longitude, h.incident_count, h.avg_severity, h.crime_types, h.last_seen) for h in spots]


def format_recent_events(rows: list[tuple]) -> str:
    """Recent events, one a line."""
    lines = ["recent events:"] if rows else ["recent events: none"]
    for ts, kind, severity, status, city, title in rows:
        sev = "-" if severity is None else severity
        lines.append(f"  {ts:%Y-%m-%d %H:%M} UTC  {kind:<19} sev {sev}  {status:<8}  {city}: {title}")
    return "\n".join(lines)


def format_hotspots(rows: list[tuple], days: int = 7) -> str:
    """Hotspot cells, one a line."""
    title = f"hotspots (verified incidents by {DEFAULT_CELL_M:g} m cell, last {days} days):"
    lines = [title] if rows else [f"hotspots (last {days} days): none"]
    for lat, lng, incidents, severity, types, last in rows:
        avg = "-" if severity is None else f"{severity:.2f}"
        lines.append(f"  {lat:8.3f}, {lng:8.3f}  {incidents:>4} incidents  avg severity {avg}  "
                     f"last {last:%Y-%m-%d %H:%M}  {', '.join(types)}")
    return "\n".join(lines)
