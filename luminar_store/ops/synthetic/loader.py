"""Loading a run of synthetic data: binary COPY in transactional batches, under an advisory lock.

Order inside a run:
1. one transaction: miners and validators (inserted with a plausible history when their uid is new), the run's
   crime clusters (one per hotspot) and risk zones for the busiest hotspots (once per seed);
2. one transaction per batch (``batch_size`` reports, never splitting an incident): COPY the reports, then the
   events that group them (the related-reports trigger sees them), then the consensus records of those events;
3. one transaction: the run's rounds and validations added to the miners' and validators' records, the clusters'
   figures computed from their events, and clusters that got no event removed.

An interruption (Ctrl-C, a lost connection) rolls back the batch in flight; committed batches are whole.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from luminar_store.errors import OperationError
from luminar_store.limits import SUCCESS_THRESHOLD
from luminar_store.ops.synthetic.copying import write_run
from luminar_store.ops.synthetic.stream import BLOCK, TEMPO_SECONDS, RunStream, Tally
from luminar_store.ops.synthetic.world import World, build_world, hotkey, offset
from luminar_store.repositories.miners import overall_score

__all__ = ["LOCK_KEY", "LoadSummary", "load_run"]

#: Session advisory lock held by a load ("SYNTHET" in ASCII): two loads never pick the same run number.
LOCK_KEY = 0x53594E54484554

# The next run number of a seed: one more than the highest in the external ids `syn-<seed>-r<run>-<n>`.
NEXT_RUN = """
SELECT coalesce(max(substring(external_id FROM %(pattern)s)::integer), -1) + 1
  FROM raw_incident_reports
 WHERE external_id LIKE %(like)s
"""
INSERT_MINER = """
INSERT INTO miner_performance (miner_uid, hotkey, coldkey, integrity_score, clustering_score, novelty_score,
                               quality_score, overall_score, avg_overall_score, total_score, total_rounds,
                               successful_rounds, is_active, registered_at, last_activity, stake_amount)
VALUES (%(uid)s, %(hotkey)s, %(coldkey)s, %(integrity)s, %(clustering)s, %(novelty)s, %(quality)s, %(overall)s,
        %(avg)s, %(avg)s * %(rounds)s, %(rounds)s, %(successful)s, %(active)s, %(registered)s, %(last_active)s,
        %(stake)s)
ON CONFLICT (miner_uid) DO NOTHING
"""
INSERT_VALIDATOR = """
INSERT INTO validator_performance (validator_uid, hotkey, coldkey, validated_events, agreements,
                                   consensus_accuracy, avg_score_given, stake_amount, is_active, last_activity)
VALUES (%(uid)s, %(hotkey)s, %(coldkey)s, %(total)s, %(agreements)s, %(accuracy)s, %(avg)s, %(stake)s, %(active)s,
        %(last_active)s)
ON CONFLICT (validator_uid) DO NOTHING
"""
INSERT_CLUSTER = """
INSERT INTO crime_clusters (cluster_id, miner_uid, latitude, longitude, radius_m, event_count, dominant_crime_type,
                            time_start, time_end, metadata)
VALUES (%(id)s, %(miner)s, %(lat)s, %(lng)s, %(radius)s, 0, NULL, %(start)s, %(end)s, %(metadata)s)
"""
INSERT_ZONE = """
INSERT INTO risk_zones (name, boundary, risk_level, risk_score, crime_types, valid_from, valid_until, metadata)
SELECT %(name)s, ST_GeomFromText(%(wkt)s, 4326), %(level)s, %(score)s, %(types)s, %(from)s, %(until)s, %(metadata)s
 WHERE NOT EXISTS (SELECT 1 FROM risk_zones WHERE metadata ->> 'synthetic_key' = %(key)s)
"""
# The run's rounds and validations added to the records: the means are the schema's running_mean_score, the one
# definition the repositories' per-round upserts use as well; total_score adds the rounds' overall scores.
ADD_MINER_ROUNDS = """
UPDATE miner_performance
   SET total_rounds = total_rounds + %(rounds)s,
       successful_rounds = successful_rounds + %(successful)s,
       avg_overall_score = running_mean_score(avg_overall_score, total_rounds, %(score_sum)s, %(rounds)s),
       total_score = total_score + %(score_sum)s,
       overall_score = %(last_score)s,
       last_activity = greatest(last_activity, %(last_active)s)
 WHERE miner_uid = %(uid)s
"""
ADD_VALIDATIONS = """
UPDATE validator_performance
   SET validated_events = validated_events + %(total)s,
       agreements = agreements + %(agreements)s,
       consensus_accuracy = (agreements + %(agreements)s)::double precision
                            / nullif(validated_events + %(total)s, 0),
       avg_score_given = running_mean_score(avg_score_given, validated_events, %(score_sum)s, %(total)s),
       last_activity = greatest(last_activity, %(last_active)s)
 WHERE validator_uid = %(uid)s
"""
FINISH_CLUSTER = """
UPDATE crime_clusters
   SET event_count = %(count)s, dominant_crime_type = %(dominant)s, avg_severity = %(severity)s,
       time_start = %(first)s, time_end = %(last)s
 WHERE cluster_id = %(id)s
"""
DROP_EMPTY_CLUSTERS = "DELETE FROM crime_clusters WHERE cluster_id = ANY(%(ids)s) AND event_count = 0"
LOCK = "SELECT pg_advisory_lock(%(key)s)"
UNLOCK = "SELECT pg_advisory_unlock(%(key)s)"


@dataclass
class LoadSummary:
    """What a load wrote: seed and run, rows per table, seconds taken."""

    seed: int
    run: int
    reports: int = 0
    events: int = 0
    consensus_records: int = 0
    clusters: int = 0
    risk_zones: int = 0
    miners: int = 0
    validators: int = 0
    seconds: float = 0.0
    batches: int = 0

    @property
    def reports_per_second(self) -> float:
        return self.reports / self.seconds if self.seconds else 0.0


def _next_run(conn: psycopg.Connection, seed: int) -> int:
    return conn.execute(NEXT_RUN, {"pattern": f"^syn-{seed}-r([0-9]+)-", "like": f"syn-{seed}-r%"}).fetchone()[0]


def _hexagon(lat: float, lng: float, radius_m: float) -> str:
    points = [offset(lat, lng, radius_m * math.cos(a), radius_m * math.sin(a))
              for a in (math.pi / 3 * k for k in range(6))]
    points.append(points[0])
    return "POLYGON((" + ", ".join(f"{p_lng:.7f} {p_lat:.7f}" for p_lat, p_lng in points) + "))"


def _prepare(conn: psycopg.Connection, world: World, stream: RunStream, summary: LoadSummary) -> None:
    """Miners, validators, clusters and zones, in one transaction before the first batch."""
    import json
    import random

    rng = random.Random(f"luminar-synthetic-setup:{world.seed}:{stream.run}")
    now, start = stream.now, stream.start
    rounds_per_day = 86400 / TEMPO_SECONDS
    miners = []
    for m in world.miners:
        days_registered = m.registered_days_ago + stream.days
        rounds = int(days_registered * rounds_per_day * rng.uniform(0.6, 1.0))
        success = min(0.99, max(0.02, m.skill * 1.25 - 0.25 + rng.gauss(0, 0.03)))
        scores = {k: round(min(1.0, max(0.0, m.skill + rng.gauss(d, 0.05))), 4)
                  for k, d in (("integrity", 0.05), ("clustering", 0.0), ("novelty", -0.08), ("quality", 0.02))}
        overall = round(overall_score(scores), 4)  # the repository's definition of a round's overall score
        last_active = now - (rng.uniform(0, 3600) if m.active else rng.uniform(3, 30) * 86400)
        miners.append({"uid": m.uid, "hotkey": m.hotkey, "coldkey": hotkey("miner-coldkey", m.uid),
                       "stake": m.stake, **scores, "overall": overall,
                       "avg": round(min(1.0, max(0.0, overall + rng.gauss(0, 0.02))), 4), "rounds": rounds,
                       "successful": int(rounds * success), "active": m.active,
                       "registered": datetime.fromtimestamp(now - days_registered * 86400, UTC),
                       "last_active": datetime.fromtimestamp(last_active, UTC)})
    validators = []
    for v in world.validators:
        total = int((v.registered_days_ago + stream.days) * rounds_per_day * rng.uniform(20, 60))
        accuracy = min(0.995, max(0.5, 0.93 - abs(v.skill) * 2 - v.noise + rng.gauss(0, 0.01)))
        last_active = now - (rng.uniform(0, 1800) if v.active else rng.uniform(2, 20) * 86400)
        validators.append({"uid": v.uid, "hotkey": v.hotkey, "coldkey": hotkey("validator-coldkey", v.uid),
                           "total": total, "agreements": int(total * accuracy),
                           "accuracy": int(total * accuracy) / total if total else 0.0,
                           "avg": round(min(1.0, max(0.0, 0.68 + v.skill + rng.gauss(0, 0.01))), 4),
                           "stake": v.stake, "active": v.active,
                           "last_active": datetime.fromtimestamp(last_active, UTC)})
    clusters, zones = [], []
    for h in world.hotspots:
        h.cluster_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        city = world.cities[h.city_index].city
        clusters.append({"id": h.cluster_id, "miner": world.miners[rng.randrange(len(world.miners))].uid,
                         "lat": h.lat, "lng": h.lng, "radius": round(h.radius_m * 3, 1),
                         "start": datetime.fromtimestamp(start, UTC), "end": datetime.fromtimestamp(now, UTC),
                         "metadata": psycopg.types.json.Jsonb({
                             "source": "synthetic", "synthetic_run": f"{world.seed}-r{stream.run}",
                             "hotspot": h.key, "location_name": h.name, "city": city.name, "kind": h.kind})})
        if h.weight > 0.4:  # the two busiest hotspots of each city (weights 1 and 0.47)
            level = 5 if h.weight == 1.0 else 4
            zones.append({"name": f"{h.name} ({city.name})", "wkt": _hexagon(h.lat, h.lng, h.radius_m * 5),
                          "level": level, "score": round(min(0.99, 0.45 + 0.09 * level + rng.uniform(-0.04, 0.04)), 2),
                          "types": h.signature,
                          "from": datetime.fromtimestamp(start, UTC),
                          "until": datetime.fromtimestamp(now + 30 * 86400, UTC), "key": h.key,
                          "metadata": json.dumps({"source": "synthetic", "synthetic_key": h.key, "city": city.name,
                                                  "kind": h.kind})})
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(INSERT_MINER, miners)
        cur.executemany(INSERT_VALIDATOR, validators)
        cur.executemany(INSERT_CLUSTER, clusters)
        inserted = 0
        for zone in zones:
            cur.execute(INSERT_ZONE, zone)
            inserted += cur.rowcount
    summary.miners, summary.validators, summary.risk_zones = len(miners), len(validators), inserted


def _finish(conn: psycopg.Connection, world: World, tally: Tally, now: float, summary: LoadSummary) -> None:
    """Add the run's figures to miners, validators and clusters; drop clusters that got no event."""
    last = datetime.fromtimestamp(now, UTC)
    per_miner: dict[int, list[tuple[int, float]]] = {}
    for (uid, round_number), (total, count) in sorted(tally.miner_rounds.items()):
        per_miner.setdefault(uid, []).append((round_number, total / count))
    miners = []
    for uid, rounds in per_miner.items():
        means = [mean for _, mean in rounds]
        miners.append({"uid": uid, "rounds": len(means), "successful": sum(m >= SUCCESS_THRESHOLD for m in means),
                       "score_sum": sum(means), "last_score": round(means[-1], 4), "last_active": last})
    validators = [{"uid": uid, "total": t[0], "agreements": t[1], "score_sum": t[2], "last_active": last}
                  for uid, t in sorted(tally.validators.items())]
    clusters = []
    for h in world.hotspots:
        stats = tally.clusters.get(h.key)
        if stats is None or stats.count == 0:
            continue
        clusters.append({"id": h.cluster_id, "count": stats.count,
                         "dominant": max(sorted(stats.types), key=stats.types.__getitem__),
                         "severity": round(stats.severity_sum / stats.count, 3),
                         "first": datetime.fromtimestamp(stats.first, UTC),
                         "last": datetime.fromtimestamp(stats.last, UTC)})
    with conn.transaction(), conn.cursor() as cur:
        if miners:
            cur.executemany(ADD_MINER_ROUNDS, miners)
        if validators:
            cur.executemany(ADD_VALIDATIONS, validators)
        if clusters:
            cur.executemany(FINISH_CLUSTER, clusters)
        cur.execute(DROP_EMPTY_CLUSTERS, {"ids": [h.cluster_id for h in world.hotspots]})
    summary.clusters = len(clusters)


def load_run(conn: psycopg.Connection, *, seed: int, reports: int, days: int, now: float | None = None,
             batch_size: int = 20_000, workers: int = 1,
             progress: Callable[[int], object] | None = None) -> LoadSummary:
    """Load the next run of ``seed`` through ``conn`` and ``workers - 1`` more sessions (see the module text);
    ``progress(n)`` receives the report count of each committed batch. Raises ``OperationError`` when the database
    has no schema; server errors come through as ``psycopg.Error`` (the batches in flight are rolled back)."""
    started = time.perf_counter()
    with conn.transaction():
        if conn.execute("SELECT to_regclass('public.raw_incident_reports') IS NULL").fetchone()[0]:
            raise OperationError("this database has no Luminar schema (raw_incident_reports is missing); "
                                 "apply the migrations first: make db-migrate")
        conn.execute(LOCK, {"key": LOCK_KEY})  # a session lock: it outlives this transaction
    try:
        with conn.transaction():
            run = _next_run(conn, seed)
        world = build_world(seed)
        stream = RunStream(world, run=run, total=reports, days=days, now=time.time() if now is None else now)
        summary = LoadSummary(seed=seed, run=run)
        _prepare(conn, world, stream, summary)
        written = write_run(conn, stream, per_batch=max(1, batch_size // BLOCK), workers=workers,
                            progress=progress)
        summary.batches, summary.reports = written.batches, written.reports
        summary.events, summary.consensus_records = written.events, written.consensus
        _finish(conn, world, written.tally, stream.now, summary)
    finally:
        _unlock(conn)
    summary.seconds = time.perf_counter() - started
    return summary


def _unlock(conn: psycopg.Connection) -> None:
    if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return  # a broken session releases its lock when it ends
    try:
        with conn.transaction():
            conn.execute(UNLOCK, {"key": LOCK_KEY})
    except psycopg.Error:
        pass
