"""``luminar-db analyze``: refresh every crime intelligence figure of the database in one run.

A run is a list of steps (``STEPS``), each one SQL function of the schema run in its own transaction as the owner,
each returning its figures:

- ``hotspots``: the significant Getis-Ord Gi* cells of the window (``luminar_store_gistar``), kept in
  ``gistar_cells`` for the readers (``get_significant_hotspots`` reads them while the run is fresh);

and the steps the analysis modules add (clusters, near repeats, risk zones). Every step is safe to run again: it
replaces what the previous run of the same parameters made and never touches what nodes stored.

The steps run two at a time, each worker on its own connection, taking the next step of ``ORDER`` (the longest
first) as it finishes one: the server's two cores both work, and a long first run of the clusters does not hold
the steps queued behind it. No two steps write the same rows, and none reads what another writes.

One run at a time: a run holds a session advisory lock (``RUN_LOCK``) and a second run, from cron or by hand, is
refused at once naming the first one's start, changing nothing. Each run is recorded in ``analysis_runs`` (started,
finished, parameters, figures; the error of a failed step, with the steps before it kept). Safe for cron and
``pg_cron``: exit status 0 on success, 1 with one line on stderr otherwise.

Example::

    >>> result = analyze(owner_settings, AnalysisPlan(days=7))
    >>> result.headline()
    '7 days, 400 m cells: 23 hot cells (9 at 99 %), 4 cold; ...'
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from luminar_store import validation as v
from luminar_store.config import Settings
from luminar_store.errors import LuminarError, OperationError
from luminar_store.limits import (
    DEFAULT_ANALYSIS_DAYS,
    DEFAULT_CELL_M,
    DEFAULT_CLUSTER_EPS_M,
    DEFAULT_CLUSTER_MIN_POINTS,
    DEFAULT_NEAR_REPEAT_HOURS,
    DEFAULT_NEAR_REPEAT_M,
    DEFAULT_TREND_WEEKS,
    DEFAULT_ZONE_DAYS,
    MAX_CELL_M,
    MAX_DAYS,
    MAX_TREND_WEEKS,
    MIN_CELL_M,
)
from luminar_store.ops.connect import connect

__all__ = ["AnalysisPlan", "AnalysisResult", "Step", "STEPS", "ORDER", "WORKERS", "RUN_LOCK", "analyze"]

#: The advisory lock (two int4 keys) a run holds: one analyze at a time per database. Its first key is its own: the
#: schema's writers lock incident buckets under (1818585412, bucket) and cell-day buckets under (1818585413, bucket),
#: and a run holding one of those would stop every write to that bucket for the whole run.
RUN_LOCK = (1818585414, 1)

START_RUN = "INSERT INTO analysis_runs (started_at, parameters) VALUES (now(), %s) RETURNING run_id, started_at"
FINISH_RUN = "UPDATE analysis_runs SET finished_at = clock_timestamp(), figures = %s, error = %s WHERE run_id = %s"
RUNNING = ("SELECT started_at FROM analysis_runs WHERE finished_at IS NULL AND error IS NULL "
           "ORDER BY started_at DESC LIMIT 1")

# name: store_gistar
STORE_GISTAR = "SELECT luminar_store_gistar(%(days)s, %(cell_m)s)"
# name: gistar_figures
GISTAR_FIGURES = """
SELECT count(*) FILTER (WHERE class = 'hot') AS hot,
       count(*) FILTER (WHERE class = 'hot' AND confidence = 99) AS hot_99,
       count(*) FILTER (WHERE class = 'cold') AS cold
  FROM gistar_cells WHERE days = %(days)s AND cell_m = %(cell_m)s
"""


@dataclass(frozen=True)
class AnalysisPlan:
    """The parameters of a run: the window (``days``) and the Gi* cell side (``cell_m``, metres) of the hotspots;
    the clusters' and near repeats' window (``cluster_days``), DBSCAN's ``eps_m`` and ``min_points``, the
    near-repeat distance and time (``near_repeat_m``, ``near_repeat_hours``); the risk zones' Gi* window
    (``zone_days``) and how many weekly counts their trend test reads (``weeks``). The analyses check their own
    parameters (typed errors naming the field) before any SQL."""

    days: int = 7
    cell_m: float = DEFAULT_CELL_M
    cluster_days: int = DEFAULT_ANALYSIS_DAYS
    eps_m: float = DEFAULT_CLUSTER_EPS_M
    min_points: int = DEFAULT_CLUSTER_MIN_POINTS
    near_repeat_m: float = DEFAULT_NEAR_REPEAT_M
    near_repeat_hours: float = DEFAULT_NEAR_REPEAT_HOURS
    zone_days: int = DEFAULT_ZONE_DAYS
    weeks: int = DEFAULT_TREND_WEEKS

    def __post_init__(self) -> None:
        from luminar_store.analysis.clusters import cluster_parameters
        from luminar_store.analysis.near_repeats import near_repeat_parameters

        v.integer("days", self.days, minimum=1, maximum=MAX_DAYS)
        v.number("cell_m", self.cell_m, minimum=MIN_CELL_M, maximum=MAX_CELL_M)
        cluster_parameters(self.cluster_days, self.eps_m, self.min_points)
        near_repeat_parameters(self.cluster_days, self.near_repeat_m, self.near_repeat_hours)
        v.integer("zone_days", self.zone_days, minimum=1, maximum=MAX_DAYS)
        v.integer("weeks", self.weeks, minimum=1, maximum=MAX_TREND_WEEKS)

    def params(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Step:
    """One step of a run: its name, what the progress bar says, and the work (conn, plan) -> figures."""

    name: str
    label: str
    work: Callable[[psycopg.Connection, AnalysisPlan], dict[str, Any]]


@dataclass
class AnalysisResult:
    """The figures of each step, in order, each step's time and the run's (wall) time, in seconds."""

    plan: AnalysisPlan
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0

    def headline(self) -> str:
        """One line an operator reads: what the run found."""
        parts = []
        spots = self.figures.get("hotspots")
        if spots is not None:
            parts.append(f"{spots['hot']:,} hot cells ({spots['hot_99']:,} at 99 %), {spots['cold']:,} cold")
        for name, figures in self.figures.items():
            if name != "hotspots" and "headline" in figures:
                parts.append(str(figures["headline"]))
        return (f"{self.plan.days} days, {self.plan.cell_m:g} m cells: " + "; ".join(parts)
                + f" ({self.wall:.1f} s)")


def _hotspots(conn: psycopg.Connection, plan: AnalysisPlan) -> dict[str, Any]:
    params = {"days": plan.days, "cell_m": plan.cell_m}
    stored = conn.execute(STORE_GISTAR, params).fetchone()[0]  # type: ignore[index]
    hot, hot_99, cold = conn.execute(GISTAR_FIGURES, params).fetchone()  # type: ignore[misc]
    return {"cells": stored, "hot": hot, "hot_99": hot_99, "cold": cold}


# name: zone_trends
ZONE_TRENDS = """
SELECT count(*) FILTER (WHERE trend_direction = 'increasing') AS increasing,
       count(*) FILTER (WHERE trend_direction = 'decreasing') AS decreasing
  FROM risk_zones WHERE made_by = 'analysis'
"""


def _zones(conn: psycopg.Connection, plan: AnalysisPlan) -> dict[str, Any]:
    from luminar_store.repositories.risk_zones import analyze_risk_zones

    done = analyze_risk_zones(conn, plan.zone_days, cell_m=plan.cell_m, weeks=plan.weeks)
    increasing, decreasing = conn.execute(ZONE_TRENDS).fetchone()  # type: ignore[misc]
    figures = {"zones": done.zones, "hot_cells": done.hot_cells, "regions": done.regions,
               "incidents": done.incidents, "replaced": done.replaced, "weeks": done.weeks,
               "increasing": increasing, "decreasing": decreasing}
    figures["headline"] = (f"{done.zones:,} risk zones ({increasing:,} increasing, {decreasing:,} decreasing over "
                           f"{done.weeks} weeks)")
    return figures


def _clusters(conn: psycopg.Connection, plan: AnalysisPlan) -> dict[str, Any]:
    from luminar_store.analysis.clusters import analyze_clusters

    done = analyze_clusters(conn, days=plan.cluster_days, eps_m=plan.eps_m, min_points=plan.min_points)
    figures = asdict(done)
    figures["headline"] = f"{done.clusters:,} clusters ({done.events_updated:,} events newly assigned)"
    return figures


def _near_repeats(conn: psycopg.Connection, plan: AnalysisPlan) -> dict[str, Any]:
    from luminar_store.analysis.near_repeats import flag_near_repeats

    done = flag_near_repeats(conn, days=plan.cluster_days, distance_m=plan.near_repeat_m,
                             hours=plan.near_repeat_hours)
    figures = asdict(done)
    figures["headline"] = f"{done.flagged_incidents:,} near repeats"
    return figures


#: The steps of a run, in order.
STEPS: list[Step] = [Step("hotspots", "significant hotspots (Gi*)", _hotspots),
                     Step("clusters", "clusters (DBSCAN)", _clusters),
                     Step("near_repeats", "near repeats", _near_repeats),
                     Step("zones", "risk zones and their trends", _zones)]
#: The order the workers take the steps in: the longest first (at 1M events, 30 days: the clusters, 17 s again and
#: the longest the first time, when every event gets its pointer; the near repeats, 26 s; the zones, 15 s; Gi*,
#: 10 s), so the two workers finish close together.
ORDER = ("clusters", "near_repeats", "zones", "hotspots")
#: Steps run at once, each on its own connection (the server's cores).
WORKERS = 2


def _refused(exc: psycopg.Error) -> OperationError:
    diag = exc.diag
    text = diag.message_primary or str(exc).splitlines()[0]
    if diag.message_hint:
        text += f" ({diag.message_hint})"
    return OperationError(f"analyze stopped: {text}")


def _run_worker(settings: Settings, conn: psycopg.Connection | None, queue: list[Step], plan: AnalysisPlan,
                result: AnalysisResult, progress: Callable[[Step], None] | None, guard: threading.Lock,
                failures: list[OperationError]) -> None:
    """Take the next step of ``queue`` until it is empty, running each on ``conn`` (or a connection of its own) in
    its own transaction; stop at the first failure (recorded in ``failures``) or when another worker failed."""
    own = conn is None
    try:
        if own:
            conn = connect(settings, autocommit=True)
        assert conn is not None
        while True:
            with guard:
                if failures or not queue:
                    return
                step = queue.pop(0)
                if progress is not None:
                    progress(step)
            began = time.monotonic()
            with conn.transaction():
                figures = step.work(conn, plan)
            with guard:
                result.figures[step.name] = figures
                result.seconds[step.name] = time.monotonic() - began
    except psycopg.Error as exc:
        failures.append(_refused(exc))
    except LuminarError as exc:
        failures.append(OperationError(f"analyze stopped: {exc}"))
    finally:
        if own and conn is not None:
            conn.close()


def analyze(settings: Settings, plan: AnalysisPlan | None = None, *,
            progress: Callable[[Step], None] | None = None) -> AnalysisResult:
    """Run every step of ``STEPS`` for ``plan`` on the database of ``settings`` (the owner's), one transaction a
    step, ``WORKERS`` at once in ``ORDER`` (the server works on two cores; the steps share no row they write);
    ``progress(step)`` is called as each step begins. Returns the figures, in ``STEPS`` order.

    Raises ``OperationError`` when another run holds the lock (naming when it started), when the schema lacks the
    analysis (naming ``luminar-db migrate``), or when a step fails (its message; the steps done stay done, the
    run's record keeps the error)."""
    plan = plan or AnalysisPlan()
    result = AnalysisResult(plan)
    started = time.monotonic()
    with connect(settings, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('analysis_runs') IS NULL").fetchone()[0]:  # type: ignore[index]
            raise OperationError(f"database {settings.name} lacks the analysis tables; run: luminar-db migrate")
        if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", RUN_LOCK).fetchone()[0]:  # type: ignore[index]
            began = conn.execute(RUNNING).fetchone()
            since = f" (running since {began[0]:%Y-%m-%d %H:%M:%S %Z})" if began else ""
            raise OperationError(f"another analyze is running on {settings.target()}{since}; nothing was changed")
        try:
            run_id, _ = conn.execute(START_RUN, (json.dumps(plan.params()),)).fetchone()  # type: ignore[misc]
            guard, failures = threading.Lock(), []
            by_name = {step.name: step for step in STEPS}
            queue = [by_name[name] for name in ORDER]
            others = [threading.Thread(target=_run_worker, name=f"luminar-analyze-{n}",
                                       args=(settings, None, queue, plan, result, progress, guard, failures))
                      for n in range(1, WORKERS)]
            for thread in others:
                thread.start()
            _run_worker(settings, conn, queue, plan, result, progress, guard, failures)
            for thread in others:
                thread.join()
            result.figures = {s.name: result.figures[s.name] for s in STEPS if s.name in result.figures}
            result.wall = time.monotonic() - started
            error = failures[0] if failures else None
            conn.execute(FINISH_RUN, (json.dumps(result.figures, default=str),
                                      None if error is None else str(error), run_id))
            if error is not None:
                raise error
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", RUN_LOCK)
    return result
