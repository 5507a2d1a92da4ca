"""Every fault scenario in turn, a table of their figures, the goals checked, the figures kept as JSON.

Scenarios, in this order: writes, bulk, rounds, migrators, pool, fuzz, claims, outage (``benchmarks/faults/<name>.py``,
each ``async def run(*, quick: bool = False) -> dict`` on its own scratch server). One that is not there yet is
skipped with a line saying so. ``--quick`` runs the short forms.

Goals, by the figure's name (its last part, for nested figures): a name holding ``lost``, ``missing``, ``partial``,
``duplicate``, ``twice``, ``more_than_once``, ``stranded``, ``failed``, ``unexpected``, ``server_error``,
``unnamed``, ``false_`` or ``hung`` must be 0; one holding ``first_success`` (seconds after the server is back)
must be at most 2 (figures under ``per_call``, ``samples`` or ``errors_seen`` are breakdowns: no goal). A scenario
that raises misses its goals too.

Writes ``benchmarks/results/faults-<UTC start>.json`` (every figure, the goals, the machine, the commit). Exit code
0 when every goal was met, 1 when one was missed (each named on stderr), 2 on a usage error.

Example: ``.venv/bin/python benchmarks/faults/run.py --quick``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE.parent / "results"
for _path in (str(HERE.parent), str(HERE)):  # faults/ first: its modules' names win
    if _path not in sys.path:
        sys.path.insert(0, _path)

import common  # noqa: E402  (after the path: the scenarios import it by this name)

SCENARIOS = ("writes", "bulk", "rounds", "migrators", "pool", "fuzz", "claims", "outage")

#: (words in a figure's name, goal text, test): the first entry whose word is in the name applies.
ZERO_WORDS = ("lost", "missing", "partial", "duplicate", "twice", "more_than_once", "stranded", "failed",
              "unexpected", "server_error", "unnamed", "false_", "hung")
FIRST_SUCCESS_LIMIT_S = 2.0
#: Figures under these names are breakdowns or examples of others: no goal of their own.
NO_GOALS_UNDER = ("per_call", "samples", "errors_seen")


def goal_of(name: str) -> tuple[str, float] | None:
    """``("<=", limit)`` for a figure with a goal (``== 0`` is ``("<=", 0)``), else ``None``."""
    if any(part in NO_GOALS_UNDER for part in name.split(".")[:-1]):
        return None
    leaf = name.rsplit(".", 1)[-1].lower()
    if "first_success" in leaf:
        return ("<=", FIRST_SUCCESS_LIMIT_S)
    if any(word in leaf for word in ZERO_WORDS):
        return ("<=", 0.0)
    return None


def flatten(value: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    """``(dotted name, value)`` of every leaf of nested dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def check(scenario: str, figures: dict[str, object]) -> list[dict[str, object]]:
    """The goal figures of one scenario, each with ``met``."""
    rows = []
    for name, value in flatten(figures):
        goal = goal_of(name.split("[", 1)[0] if name.endswith("]") else name)
        if goal is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        limit = goal[1]
        rows.append({"scenario": scenario, "figure": name, "value": value,
                     "goal": "0" if limit == 0 else f"<= {limit:g} s", "met": value <= limit})
    return rows


def run_scenario(name: str, quick: bool) -> dict[str, object]:
    """One scenario: ``{"present", "figures", "seconds", "error"}``."""
    if not (HERE / f"{name}.py").exists():
        print(f"{name}: not present", file=sys.stderr, flush=True)
        return {"present": False}
    common.say(f"{name}: running{' (quick)' if quick else ''}")
    start = time.monotonic()
    try:
        module = importlib.import_module(name)
        figures = asyncio.run(module.run(quick=quick))
    except Exception as exc:  # noqa: BLE001 - a scenario that breaks is a result, and the others still run
        traceback.print_exc()
        return {"present": True, "figures": {}, "seconds": common.elapsed(start),
                "error": f"{type(exc).__name__}: {exc}"}
    common.say(f"{name}: done in {time.monotonic() - start:.1f} s")
    return {"present": True, "figures": figures, "seconds": common.elapsed(start), "error": None}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def table(results: dict[str, dict[str, object]]) -> str:
    """Scenario | figure | value | goal | met?"""
    lines = [f"{'scenario':<10} {'figure':<52} {'value':>14}  {'goal':<8} met?", "-" * 94]
    for name, result in results.items():
        if not result.get("present"):
            lines.append(f"{name:<10} (not present)")
            continue
        if result.get("error"):
            lines.append(f"{name:<10} ERROR {result['error']}"[:200])
        for figure, value in flatten(result.get("figures", {})):
            goal = goal_of(figure)
            rows = check(name, {figure: value}) if goal else []
            met = "" if not rows else ("yes" if rows[0]["met"] else "NO")
            goal_text = rows[0]["goal"] if rows else ""
            lines.append(f"{name:<10} {figure:<52} {_fmt(value):>14}  {goal_text:<8} {met}")
    return "\n".join(lines)


def _git(*argv: str) -> str:
    try:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/faults/run.py", description=__doc__.split("\n\n")[0],
                                     epilog="Example: .venv/bin/python benchmarks/faults/run.py --quick")
    parser.add_argument("--quick", action="store_true", help="the short form of every scenario")
    parser.add_argument("--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    args = parser.parse_args(argv)
    common.quiet_pool_logs()
    common.stop_on_sigterm()
    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()
    results = {name: run_scenario(name, args.quick) for name in SCENARIOS if not args.only or name in args.only}
    goals = [row for name, result in results.items() for row in check(name, result.get("figures") or {})]
    missed = [f"{g['scenario']}.{g['figure']} = {g['value']} (goal {g['goal']})" for g in goals if not g["met"]]
    missed += [f"{name}: {result['error']}" for name, result in results.items() if result.get("error")]
    document = {
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_start": load_start, "load_average_end": os.getloadavg()},
        "code": {"git_commit": _git("rev-parse", "--short", "HEAD") or None,
                 "uncommitted_changes": bool(_git("status", "--porcelain", "--", "luminar_store", "migrations"))},
        "scenarios": results,
        "goals": goals,
        "missed": missed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"faults-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(table(results))
    common.say(f"figures written to {path}")
    for line in missed:
        print(f"goal missed: {line}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
