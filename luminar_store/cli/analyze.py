"""``luminar-db analyze``: refresh the crime intelligence of the database (``luminar_store.analysis.analyze``)."""

from __future__ import annotations

import sys

import click

from luminar_store.analysis.analyze import STEPS, AnalysisPlan, Step, analyze
from luminar_store.cli.common import env_option, settings_for
from luminar_store.limits import (
    DEFAULT_CELL_M,
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
@click.option("--zone-days", type=click.IntRange(1, MAX_DAYS), default=DEFAULT_ZONE_DAYS, show_default=True,
              help="The risk zones' window: zones are made of the cells Gi* finds hot in the last N days.")
@click.option("--weeks", type=click.IntRange(1, MAX_TREND_WEEKS), default=DEFAULT_TREND_WEEKS, show_default=True,
              help="Weekly counts a zone's trend test (Mann-Kendall) reads; fewer than 8: insufficient data.")
def analyze_command(env: str | None, days: int, cell_m: float, zone_days: int, weeks: int) -> None:
    """Refresh every crime intelligence figure: significant hotspots (Getis-Ord Gi*, kept for the readers),
    clusters, near repeats and risk zones with their trends. Each step replaces what the last run of the same
    parameters made and never touches what nodes stored; a second run while one is going is refused. Safe to run
    from cron (exit status 0 on success, 1 with the reason on stderr); each run is recorded in analysis_runs.

    \b
    Example: luminar-db analyze
    Example: luminar-db analyze --days 30      # (cron: */15 * * * * luminar-db analyze)
    """
    plan = AnalysisPlan(days=days, cell_m=cell_m, zone_days=zone_days, weeks=weeks)
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
