"""``luminar-db analyze``: refresh the crime intelligence of the database (``luminar_store.analysis.analyze``)."""

from __future__ import annotations

import sys

import click

from luminar_store.analysis.analyze import STEPS, AnalysisPlan, Step, analyze
from luminar_store.cli.common import env_option, settings_for
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

__all__ = ["analyze_command"]


@click.command("analyze")
@env_option
@click.option("--days", type=click.IntRange(1, MAX_DAYS), default=7, show_default=True,
              help="The window: the incidents of the last N days.")
@click.option("--cell-m", "cell_m", type=click.FloatRange(MIN_CELL_M, MAX_CELL_M), default=DEFAULT_CELL_M,
              show_default=True, help="Side of the Gi* hotspot cells in metres (equal-area squares).")
@click.option("--cluster-days", type=click.IntRange(1, MAX_DAYS), default=DEFAULT_ANALYSIS_DAYS, show_default=True,
              help="The clusters' and near repeats' window: the incidents of the last N days.")
@click.option("--eps-m", type=float, default=DEFAULT_CLUSTER_EPS_M, show_default=True,
              help="DBSCAN's neighbourhood radius in metres (great-circle).")
@click.option("--min-points", type=int, default=DEFAULT_CLUSTER_MIN_POINTS, show_default=True,
              help="DBSCAN: the fewest incidents within eps (itself included) that make a core incident.")
@click.option("--near-repeat-m", type=float, default=DEFAULT_NEAR_REPEAT_M, show_default=True,
              help="A near repeat lies within this many metres of an earlier incident of the same type...")
@click.option("--near-repeat-hours", type=float, default=DEFAULT_NEAR_REPEAT_HOURS, show_default=True,
              help="...and within this many hours after it (the near-repeat window).")
@click.option("--zone-days", type=click.IntRange(1, MAX_DAYS), default=DEFAULT_ZONE_DAYS, show_default=True,
              help="The risk zones' window: zones are made of the cells Gi* finds hot in the last N days.")
@click.option("--weeks", type=click.IntRange(1, MAX_TREND_WEEKS), default=DEFAULT_TREND_WEEKS, show_default=True,
              help="Weekly counts a zone's trend test (Mann-Kendall) reads; fewer than 8: insufficient data.")
def analyze_command(env: str | None, days: int, cell_m: float, cluster_days: int, eps_m: float, min_points: int,
                    near_repeat_m: float, near_repeat_hours: float, zone_days: int, weeks: int) -> None:
    """Refresh every crime intelligence figure: significant hotspots (Getis-Ord Gi*, kept for the readers),
    clusters, near repeats and risk zones with their trends. Each step replaces what the last run of the same
    parameters made and never touches what nodes stored; a second run while one is going is refused. Safe to run
    from cron (exit status 0 on success, 1 with the reason on stderr); each run is recorded in analysis_runs.

    \b
    Example: luminar-db analyze
    Example: luminar-db analyze --days 30      # (cron: */15 * * * * luminar-db analyze)
    """
    plan = AnalysisPlan(days=days, cell_m=cell_m, cluster_days=cluster_days, eps_m=eps_m, min_points=min_points,
                        near_repeat_m=near_repeat_m, near_repeat_hours=near_repeat_hours, zone_days=zone_days,
                        weeks=weeks)
    settings = settings_for(env)
    if not sys.stderr.isatty():  # cron, CI, a pipe: the headline alone
        result = analyze(settings, plan)
    else:
        bar = click.progressbar(length=len(STEPS), label="Analysing", file=sys.stderr,
                                item_show_func=lambda step: step.label if step else None)
        seen: list[Step] = []

        def progress(step: Step) -> None:
            if seen:
                bar.update(1, step)
            else:
                bar.render_progress()
            seen.append(step)

        with bar:
            result = analyze(settings, plan, progress=progress)
            bar.update(1)
    click.echo(f"Analysed {settings.target()}: {result.headline()}")
