"""Miner performance: one record per miner uid, updated once per scoring round.

A round brings the four scores of the specification (integrity, clustering, novelty, quality); the round's overall
score is their plain mean (equal weights: the specification names no weighting), unless the round also brings
``total`` (or ``final``, the same meaning; the reference node code sends them): the overall score as the validator
weighted it, in [0, 1], used instead of the mean. The round is *successful* when its overall score is at least
``SUCCESS_THRESHOLD`` (0.5). A uid that comes back with a new hotkey belongs to a
re-registered miner: its record starts afresh with this round (the schema's trigger keeps the previous record in
``audit_log`` as operation ``REREGISTER``).

Example::

    miners = MinerRepository(conn)
    result = await miners.record_round(123, "5F3sa...", {"integrity": 0.95, "clustering": 0.88,
                                                         "novelty": 0.75, "quality": 0.92})
    stats = await miners.stats(123)          # MinerStats | None
    print(stats.success_rate)                # 100.0 (percent)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from luminar_store import validation as v
from luminar_store.errors import ValidationError
from luminar_store.limits import (
    MAX_HOTKEY_LENGTH,
    MAX_LIMIT,
    MAX_ROUND,
    MAX_ROUND_KEY,
    RECENT_ROUND_KEYS,
    SUCCESS_THRESHOLD,
)
from luminar_store.models import ActiveMiner, MinerPerformance, MinerRoundResult, MinerStats
from luminar_store.repositories._base import Repository, record_row

__all__ = [
    "MinerRepository",
    "MINER_COLUMNS",
    "SCORE_KEYS",
    "OVERALL_KEYS",
    "SUCCESS_THRESHOLD",
    "MAX_HOTKEY_LENGTH",
    "overall_score",
    "validate_scores",
    "given_overall",
    "round_name",
]

#: The four scores of a round, in the order of the table's columns.
SCORE_KEYS = ("integrity", "clustering", "novelty", "quality")
#: Optional keys beside them, the same meaning: the round's overall score as the validator weighted it.
OVERALL_KEYS = ("total", "final")

# name: miner_columns
# The columns of a MinerPerformance record, in its field order; success_rate through the schema's percent_of (the
# active_miners view's definition).
MINER_COLUMNS = """miner_uid, hotkey, integrity_score, clustering_score, novelty_score, quality_score,
    overall_score, avg_overall_score, total_rounds, successful_rounds,
    percent_of(successful_rounds, total_rounds) AS success_rate,
    registered_at, last_activity, total_score, processed_reports, verified_events, stake_amount,
    coldkey, miner_id, is_active, created_at, updated_at"""

# Records one scoring round in ONE statement, so concurrent rounds of the same uid serialize on its row.
# Same hotkey: counters grow, total_score adds the round's overall score and avg_overall_score is the running mean
# (the schema's running_mean_score, which the synthetic loader's bulk update uses too). New hotkey
# (re-registration): the record restarts from this round only, with a new miner_id, registered_at = the round's
# time and no coldkey or stake_amount; processed_reports / verified_events are the uid's current counts, which the
# schema's BEFORE INSERT trigger put in EXCLUDED (with the same hotkey the row keeps its own, which the triggers
# keep true); the audit trigger writes the previous row to audit_log as a REREGISTER. `created`: the row was
# inserted (an inserted tuple has xmax = 0; an updated one carries the updater's lock). `reregistered`: updated,
# yet back to one round, which only the new-hotkey branch produces.
# A round with a key (round_key) counts once: with the same hotkey and the key among recent_round_keys, the
# conflict branch's WHERE leaves the row alone and nothing is returned (ROUND_ALREADY_COUNTED then reads it); else
# the key is appended and the list keeps its last keep_keys entries (a re-registered uid starts it afresh).
RECORD_ROUND = """
INSERT INTO miner_performance AS m (
    miner_uid, hotkey, integrity_score, clustering_score, novelty_score, quality_score,
    overall_score, avg_overall_score, total_score, total_rounds, successful_rounds, is_active, registered_at,
    last_activity, recent_round_keys)
VALUES (%(miner_uid)s, %(hotkey)s, %(integrity)s, %(clustering)s, %(novelty)s, %(quality)s,
        %(overall)s, %(overall)s, %(overall)s, 1, %(successful)s, true,
        coalesce(%(at)s::timestamptz, now()), coalesce(%(at)s::timestamptz, now()),
        CASE WHEN %(round_key)s::text IS NULL THEN '{}'::text[] ELSE ARRAY[%(round_key)s::text] END)
ON CONFLICT (miner_uid) DO UPDATE SET
    miner_id          = CASE WHEN m.hotkey = EXCLUDED.hotkey THEN m.miner_id ELSE gen_random_uuid() END,
    hotkey            = EXCLUDED.hotkey,
    integrity_score   = EXCLUDED.integrity_score,
    clustering_score  = EXCLUDED.clustering_score,
    novelty_score     = EXCLUDED.novelty_score,
    quality_score     = EXCLUDED.quality_score,
    overall_score     = EXCLUDED.overall_score,
    avg_overall_score = CASE WHEN m.hotkey = EXCLUDED.hotkey
                             THEN running_mean_score(m.avg_overall_score, m.total_rounds, EXCLUDED.overall_score, 1)
                             ELSE EXCLUDED.overall_score END,
    total_score       = CASE WHEN m.hotkey = EXCLUDED.hotkey THEN m.total_score + EXCLUDED.total_score
                             ELSE EXCLUDED.total_score END,
    processed_reports = CASE WHEN m.hotkey = EXCLUDED.hotkey THEN m.processed_reports
                             ELSE EXCLUDED.processed_reports END,
    verified_events   = CASE WHEN m.hotkey = EXCLUDED.hotkey THEN m.verified_events
                             ELSE EXCLUDED.verified_events END,
    coldkey           = CASE WHEN m.hotkey = EXCLUDED.hotkey THEN m.coldkey END,
    stake_amount      = CASE WHEN m.hotkey = EXCLUDED.hotkey THEN m.stake_amount END,
    total_rounds      = CASE WHEN m.hotkey = EXCLUDED.hotkey THEN m.total_rounds + 1 ELSE 1 END,
    successful_rounds = CASE WHEN m.hotkey = EXCLUDED.hotkey
                             THEN m.successful_rounds + EXCLUDED.successful_rounds
                             ELSE EXCLUDED.successful_rounds END,
    registered_at     = CASE WHEN m.hotkey = EXCLUDED.hotkey THEN m.registered_at ELSE EXCLUDED.registered_at END,
    is_active         = true,
    last_activity     = EXCLUDED.last_activity,
    recent_round_keys = CASE WHEN m.hotkey <> EXCLUDED.hotkey THEN EXCLUDED.recent_round_keys
                             ELSE (m.recent_round_keys || EXCLUDED.recent_round_keys)[
                                      greatest(cardinality(m.recent_round_keys)
                                               + cardinality(EXCLUDED.recent_round_keys) - %(keep_keys)s + 1, 1):]
                        END
  WHERE m.hotkey <> EXCLUDED.hotkey OR %(round_key)s::text IS NULL
     OR NOT (%(round_key)s::text = ANY (m.recent_round_keys))
RETURNING
    {miner_columns},
    (m.xmax = 0) AS created,
    (m.xmax <> 0 AND m.total_rounds = 1) AS reregistered,
    true AS counted
""".replace("{miner_columns}", MINER_COLUMNS)

# A round whose key the miner's record lists already (RECORD_ROUND's WHERE left the row alone): the record as it is.
ROUND_ALREADY_COUNTED = """
SELECT {miner_columns}, false AS created, false AS reregistered, false AS counted
  FROM miner_performance m
 WHERE m.miner_uid = %(miner_uid)s
""".replace("{miner_columns}", MINER_COLUMNS)

# One miner's record with its crime events. The counts are an aggregate over `crime_events WHERE miner_uid = $1`,
# which idx_events_miner_time (miner_uid, "timestamp" DESC) serves; the uid is bound directly (not correlated) so
# that the planner sees its value.
MINER_STATS = """
SELECT
    {miner_columns},
    e.events_submitted, e.events_verified
  FROM miner_performance m
 CROSS JOIN (SELECT count(*) AS events_submitted,
                    count(*) FILTER (WHERE verification_status = 'verified') AS events_verified
               FROM crime_events
              WHERE miner_uid = %(miner_uid)s) e
 WHERE m.miner_uid = %(miner_uid)s
""".replace("{miner_columns}", MINER_COLUMNS)

# Active miners from the specification's view, best average first (idx_miner_performance_active), optionally only
# those with success_rate >= a percentage.
ACTIVE_MINERS = """
SELECT miner_uid, hotkey, integrity_score, clustering_score, novelty_score, quality_score, overall_score,
       avg_overall_score, total_rounds, successful_rounds, success_rate::float8 AS success_rate,
       registered_at, last_activity, total_score, processed_reports, verified_events, stake_amount
  FROM active_miners
 WHERE %(min_success_rate)s::float8 IS NULL OR success_rate >= %(min_success_rate)s::float8
 ORDER BY avg_overall_score DESC, miner_uid
 LIMIT %(limit)s
"""

# How many miners are active (the specification's "network health" query).
COUNT_ACTIVE = "SELECT count(*) FROM miner_performance WHERE is_active"

# Marks a miner inactive (it keeps its history; its next round makes it active again).
DEACTIVATE = """
UPDATE miner_performance AS m SET is_active = false
 WHERE m.miner_uid = %(miner_uid)s
RETURNING {miner_columns}
""".replace("{miner_columns}", MINER_COLUMNS)


def validate_scores(scores: Any, field: str = "scores") -> dict[str, float]:
    """The four round scores, each a finite number in [0, 1] (``total``/``final`` may stand beside them: see
    ``given_overall``; they are not returned).

    Raises ``ValidationError`` naming ``scores`` (not a mapping, unknown keys, listed) or ``scores.<key>`` (missing,
    out of range, not a number).

    Example::

        >>> validate_scores({"integrity": 1, "clustering": 0.5, "novelty": 0.5, "quality": 0})["integrity"]
        1.0
    """
    if not isinstance(scores, Mapping):
        raise ValidationError(field, f"must be a mapping with the keys {', '.join(SCORE_KEYS)}, "
                                     f"got {type(scores).__name__}")
    unknown = sorted(str(key) for key in scores if key not in SCORE_KEYS and key not in OVERALL_KEYS)
    if unknown:
        raise ValidationError(field, f"unknown keys {', '.join(unknown)}; expected exactly {', '.join(SCORE_KEYS)} "
                                     f"(and optionally {' or '.join(OVERALL_KEYS)})")
    clean = {}
    for key in SCORE_KEYS:
        if key not in scores:
            raise ValidationError(f"{field}.{key}", "is required (a score in [0, 1])")
        clean[key] = v.unit_interval(f"{field}.{key}", scores[key])
    return clean


def given_overall(scores: Mapping[str, Any], field: str = "scores") -> float | None:
    """The overall score a round's ``scores`` give themselves: ``total`` or ``final`` (the same meaning: the round's
    score as the validator weighted it, in [0, 1]), ``None`` when neither is given. Both given must agree (within
    1e-9).

    Raises ``ValidationError`` naming ``scores.total`` / ``scores.final`` (out of range, not a number) or
    ``scores.final`` (differs from ``total``).

    Example::

        >>> given_overall({"integrity": 1, "clustering": 1, "novelty": 0, "quality": 0, "total": 0.8})
        0.8
    """
    given = {key: v.unit_interval(f"{field}.{key}", scores[key]) for key in OVERALL_KEYS if key in scores}
    if len(given) == 2 and not math.isclose(given["total"], given["final"], rel_tol=0.0, abs_tol=1e-9):
        raise ValidationError(f"{field}.final", f"must equal {field}.total when both are given (the same overall "
                                                f"score), got {given['final']!r} and {given['total']!r}")
    return next(iter(given.values()), None)


def round_name(round_number: int | None, round_key: str | None) -> str | None:
    """The name a round is counted once under: ``round:<n>`` for a round number (0..2**31-1), ``key:<text>`` for a
    key (1..200 characters), ``None`` for neither. Raises ``ValidationError`` (out of range, both given).

    Example::

        >>> round_name(42, None), round_name(None, "epoch-7"), round_name(None, None)
        ('round:42', 'key:epoch-7', None)
    """
    if round_number is not None and round_key is not None:
        raise ValidationError("round_key", "give round_number or round_key, not both")
    if round_number is not None:
        return f"round:{v.integer('round_number', round_number, minimum=0, maximum=MAX_ROUND)}"
    if round_key is not None:
        return f"key:{v.text('round_key', round_key, max_length=MAX_ROUND_KEY)}"
    return None


def overall_score(scores: Mapping[str, float]) -> float:
    """The overall score of a round: the mean of the four validated scores (equal weights)."""
    return sum(scores[key] for key in SCORE_KEYS) / len(SCORE_KEYS)


class MinerRepository(Repository):
    """Reads and writes ``miner_performance`` (and its view ``active_miners``) on one async connection.

    The caller owns the connection and its transaction; every method runs one statement.
    """

    async def record_round(self, miner_uid: int, hotkey: str, scores: Mapping[str, float], *,
                           at: datetime | None = None, round_number: int | None = None,
                           round_key: str | None = None) -> MinerRoundResult:
        """Record one scoring round of a miner (an upsert by uid, one statement).

        Args:
            miner_uid: the miner's uid, an integer in 0..2**31-1.
            hotkey: the miner's hotkey, 1..128 characters. A known uid with a different hotkey is a re-registered
                miner: its record restarts with this round (counters, averages, ``registered_at``, a new
                ``miner_id``) and the previous record goes to ``audit_log`` as ``REREGISTER``.
            scores: the keys ``integrity``, ``clustering``, ``novelty``, ``quality`` (all four required), each in
                [0, 1]; optionally ``total`` or ``final`` (the same meaning; both given must agree): the round's overall
                score as the validator weighted it, in [0, 1], stored as ``overall_score`` instead of the mean.
            at: when the round happened (timezone-aware, not in the future); defaults to now.
            round_number / round_key: what names this round (the validator's round number 0..2**31-1, or a key of
                1..200 characters; not both). A round is counted once per name: sent again (a retry), the record is
                returned unchanged with ``counted`` False. The record remembers its last 32 round names. Without
                either, every call counts as a new round (a retried call counts twice).

        Returns:
            ``MinerRoundResult``: the record after the round, with ``created`` / ``reregistered`` / ``counted``
            flags. The round's
            ``overall_score`` is ``total``/``final`` when given, else the mean of the four scores; it is successful
            when >= 0.5.

        Raises:
            ValidationError: naming the field (``miner_uid``, ``hotkey``, ``scores``, ``scores.novelty``, ``at``),
                before any SQL; nothing is stored.

        Example::

            r = await miners.record_round(123, "hotkey_string", {"integrity": 0.95, "clustering": 0.88,
                                                                  "novelty": 0.75, "quality": 0.92})
            r.overall_score, r.total_rounds, r.success_rate    # (0.875, 1, 100.0)
        """
        params = {
            "miner_uid": v.uid("miner_uid", miner_uid),
            "hotkey": v.text("hotkey", hotkey, max_length=MAX_HOTKEY_LENGTH),
            **validate_scores(scores),
            "at": None if at is None else v.aware_datetime("at", at),
            "round_key": round_name(round_number, round_key),
            "keep_keys": RECENT_ROUND_KEYS,
        }
        given = given_overall(scores)
        params["overall"] = overall_score(params) if given is None else given
        params["successful"] = 1 if params["overall"] >= SUCCESS_THRESHOLD else 0
        async with self._connection() as conn:
            cur = conn.cursor(row_factory=record_row(MinerRoundResult))
            row = await (await cur.execute(RECORD_ROUND, params)).fetchone()
            if row is None:  # the round's key was counted before
                row = await (await cur.execute(ROUND_ALREADY_COUNTED, params)).fetchone()
        assert row is not None  # the upsert returns its row, or the row exists
        return row

    async def stats(self, miner_uid: int) -> MinerStats | None:
        """One miner's record with its event counts, or ``None`` for an unknown uid.

        Returns ``MinerStats`` (``success_rate`` in percent; ``events_submitted`` / ``events_verified`` count the
        crime events stored under the uid — events carry the uid only, so after a re-registration they include the
        previous holder's events).

        Raises ``ValidationError`` (``miner_uid``) before any SQL.

        Example::

            stats = await miners.stats(123)
            if stats is not None and stats.success_rate > 80: ...
        """
        params = {"miner_uid": v.uid("miner_uid", miner_uid)}
        return await self._one(MINER_STATS, params, MinerStats)

    async def active(self, *, limit: int = 100, min_success_rate: float | None = None) -> list[ActiveMiner]:
        """Active miners from the ``active_miners`` view, best ``avg_overall_score`` first.

        Args:
            limit: at most this many (1..10,000).
            min_success_rate: only miners whose ``success_rate`` (percent) is at least this (0..100).

        Raises ``ValidationError`` (``limit``, ``min_success_rate``) before any SQL.

        Example::

            top = await miners.active(limit=10, min_success_rate=80)
        """
        params = {
            "limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT),
            "min_success_rate": None if min_success_rate is None
            else v.number("min_success_rate", min_success_rate, minimum=0.0, maximum=100.0),
        }
        return await self._all(ACTIVE_MINERS, params, ActiveMiner)

    async def count_active(self) -> int:
        """How many miners are active (for ``get_database_stats``).

        Example::

            n = await miners.count_active()
        """
        return int(await self._value(COUNT_ACTIVE) or 0)

    async def deactivate(self, miner_uid: int) -> MinerPerformance:
        """Mark a miner inactive (it leaves ``active_miners``; its history stays; its next round re-activates it).

        Returns the updated ``MinerPerformance``. Idempotent.

        Raises:
            ValidationError: ``miner_uid`` is not a uid (before any SQL).
            NotFoundError: no miner has this uid.

        Example::

            await miners.deactivate(123)
        """
        params = {"miner_uid": v.uid("miner_uid", miner_uid)}
        return await self._found(DEACTIVATE, params, MinerPerformance,
                                 f"miner_uid: no miner with uid {params['miner_uid']}; it appears with its first "
                                 "scoring round (record_round)")
