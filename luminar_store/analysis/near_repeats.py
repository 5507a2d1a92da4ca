"""Near-repeat flags, computed in the database: ``luminar_flag_near_repeats(days, distance_m, hours, same_address_m)``.

An incident of the window that follows an earlier incident of the window of the same type, within ``distance_m``
metres and ``hours`` hours, at another address (farther than ``same_address_m``), is a near repeat (Ratcliffe's
near-repeat pattern). The SQL function (migration 20261130045100) writes one ``near_repeats`` row per event of each
flagged incident and replaces the window's earlier flags. It writes, so it runs as the owner.

Example::

    >>> with connect(settings) as conn:
    ...     run = flag_near_repeats(conn, days=30)
    >>> run.flagged_incidents
    17
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from luminar_store import validation as v
from luminar_store.errors import ValidationError
from luminar_store.limits import (
    DEFAULT_ANALYSIS_DAYS,
    DEFAULT_NEAR_REPEAT_HOURS,
    DEFAULT_NEAR_REPEAT_M,
    DEFAULT_SAME_ADDRESS_M,
    MAX_DAYS,
    MAX_NEAR_REPEAT_HOURS,
    MAX_NEAR_REPEAT_M,
)
from luminar_store.repositories._errors import translated

__all__ = ["FLAG_NEAR_REPEATS", "NearRepeatRun", "flag_near_repeats", "near_repeat_parameters"]

# name: flag_near_repeats
# One whole run: flag, upsert the changed flags, delete the window's flags no longer found; one row of counts.
FLAG_NEAR_REPEATS = """
SELECT incidents, flagged_incidents, flags_written, flags_removed
  FROM luminar_flag_near_repeats(%(days)s, %(distance_m)s, %(hours)s, %(same_address_m)s)
"""


@dataclass(frozen=True, slots=True)
class NearRepeatRun:
    """What one run did: ``incidents`` in the window, ``flagged_incidents`` near repeats among them, ``flags_written``
    rows inserted or changed (0 on a re-run over the same data), ``flags_removed`` the window's rows no longer
    found."""

    incidents: int
    flagged_incidents: int
    flags_written: int
    flags_removed: int


def near_repeat_parameters(days: Any = DEFAULT_ANALYSIS_DAYS, distance_m: Any = DEFAULT_NEAR_REPEAT_M,
                           hours: Any = DEFAULT_NEAR_REPEAT_HOURS,
                           same_address_m: Any = DEFAULT_SAME_ADDRESS_M) -> dict[str, Any]:
    """The bound parameters of a run, checked: ``days`` 1..3650, ``distance_m`` 1..5,000 metres, ``hours``
    1..8,760, ``same_address_m`` from 0 to less than ``distance_m`` (``luminar_store.limits``). Raises
    ``ValidationError`` naming the field and the rule."""
    params = {"days": v.integer("days", days, minimum=1, maximum=MAX_DAYS),
              "distance_m": v.number("distance_m", distance_m, minimum=1.0, maximum=MAX_NEAR_REPEAT_M),
              "hours": v.number("hours", hours, minimum=1.0, maximum=MAX_NEAR_REPEAT_HOURS),
              "same_address_m": v.number("same_address_m", same_address_m, minimum=0.0, maximum=MAX_NEAR_REPEAT_M)}
    if params["same_address_m"] >= params["distance_m"]:
        raise ValidationError("same_address_m", f"must be less than distance_m ({params['distance_m']:g}), got "
                                                f"{params['same_address_m']:g}")
    return params


def flag_near_repeats(conn: psycopg.Connection, *, days: int = DEFAULT_ANALYSIS_DAYS,
                      distance_m: float = DEFAULT_NEAR_REPEAT_M, hours: float = DEFAULT_NEAR_REPEAT_HOURS,
                      same_address_m: float = DEFAULT_SAME_ADDRESS_M) -> NearRepeatRun:
    """Flag the near repeats among the incidents of the last ``days`` days on ``conn`` (the owner's).

    Raises ``ValidationError`` (``days``, ``distance_m``, ``hours``, ``same_address_m``) before any SQL;
    ``PermissionDeniedError`` for a login that is not the owner's.

    Example: ``run = flag_near_repeats(conn, days=30, distance_m=200, hours=168)``
    """
    params = near_repeat_parameters(days, distance_m, hours, same_address_m)
    with translated():
        row = conn.execute(FLAG_NEAR_REPEATS, params).fetchone()
    assert row is not None  # the function returns one row
    return NearRepeatRun(*row)
