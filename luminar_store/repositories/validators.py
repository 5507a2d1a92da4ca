"""Validator performance: one record per validator uid, updated once per validation it makes.

Each validation says whether the validator agreed with the network's consensus and which score it gave; the record
keeps the counts, ``consensus_accuracy = agreements / validated_events`` (0..1), the mean score given and the stake
(``stake_amount``; the argument keeps the name ``stake``).
As for miners, a uid that comes back with a new hotkey is a re-registered validator: its record starts afresh, and
its trigger keeps the previous record in ``audit_log`` as operation ``REREGISTER``.

Example::

    validators = ValidatorRepository(conn)
    await validators.record_validation(7, "5Gx...", agreed=True, score_given=0.82, stake=1500.0)
    stats = await validators.stats(7)        # ValidatorStats | None
"""

from __future__ import annotations

from datetime import datetime

from luminar_store import validation as v
from luminar_store.errors import ValidationError
from luminar_store.limits import MAX_HOTKEY_LENGTH, MAX_LIMIT, MAX_STAKE
from luminar_store.models import ValidatorStats, ValidatorUpdate
from luminar_store.repositories._base import Repository

__all__ = ["ValidatorRepository", "VALIDATOR_COLUMNS", "MAX_HOTKEY_LENGTH"]


# name: validator_columns
# The columns of a ValidatorStats record, in its field order; agreement_rate is consensus_accuracy in percent,
# through the schema's percent_of.
VALIDATOR_COLUMNS = """validator_id, validator_uid, hotkey, validated_events, agreements, consensus_accuracy,
       percent_of(agreements, validated_events) AS agreement_rate,
       avg_score_given, stake_amount, is_active, last_activity, coldkey, created_at, updated_at"""

# Records one validation in ONE statement. `prior` locks and reads the uid's current row (if any); the INSERT
# reads `prior` (FROM ... AS locked) before it upserts, so `prior` holds exactly the record the upsert replaces (a
# CTE is otherwise read lazily, and a row this statement already updated would no longer be visible to it).
# Same hotkey: counts grow, accuracy and the mean score given (running_mean_score) are recomputed, stake changes
# only when given.
# New hotkey (re-registration): the record restarts from this validation with a new validator_id and stake (given
# or 0) and no coldkey, and the audit trigger validator_performance_audit_update writes the previous row to
# audit_log as a REREGISTER (as miner_performance's does). `created`: the row was inserted (xmax = 0); `reregistered`:
# updated, yet back to one validation, which only the new-hotkey branch produces.
RECORD_VALIDATION = """
WITH prior AS (
    SELECT * FROM validator_performance WHERE validator_uid = %(validator_uid)s FOR UPDATE
), saved AS (
    INSERT INTO validator_performance AS vp (
        validator_uid, hotkey, validated_events, agreements, consensus_accuracy, avg_score_given, stake_amount,
        is_active, last_activity)
    SELECT %(validator_uid)s::integer, %(hotkey)s::text, 1, %(agreements)s::integer, %(agreements)s::float8,
           %(score_given)s::float8, coalesce(%(stake)s::float8, 0), true, coalesce(%(at)s::timestamptz, now())
      FROM (SELECT count(*) FROM prior) AS locked
    ON CONFLICT (validator_uid) DO UPDATE SET
        validator_id       = CASE WHEN vp.hotkey = EXCLUDED.hotkey THEN vp.validator_id ELSE gen_random_uuid() END,
        hotkey             = EXCLUDED.hotkey,
        validated_events   = CASE WHEN vp.hotkey = EXCLUDED.hotkey THEN vp.validated_events + 1 ELSE 1 END,
        agreements         = CASE WHEN vp.hotkey = EXCLUDED.hotkey THEN vp.agreements + EXCLUDED.agreements
                                  ELSE EXCLUDED.agreements END,
        consensus_accuracy = CASE WHEN vp.hotkey = EXCLUDED.hotkey
                                  THEN (vp.agreements + EXCLUDED.agreements)::float8 / (vp.validated_events + 1)
                                  ELSE EXCLUDED.consensus_accuracy END,
        avg_score_given    = CASE WHEN vp.hotkey = EXCLUDED.hotkey
                                  THEN running_mean_score(vp.avg_score_given, vp.validated_events,
                                                          EXCLUDED.avg_score_given, 1)
                                  ELSE EXCLUDED.avg_score_given END,
        stake_amount       = CASE WHEN %(stake)s::float8 IS NOT NULL THEN EXCLUDED.stake_amount
                                  WHEN vp.hotkey = EXCLUDED.hotkey THEN vp.stake_amount
                                  ELSE 0 END,
        coldkey            = CASE WHEN vp.hotkey = EXCLUDED.hotkey THEN vp.coldkey END,
        is_active          = true,
        last_activity      = EXCLUDED.last_activity
    RETURNING vp.*, (vp.xmax = 0) AS created
)
SELECT {validator_columns},
       s.created, (NOT s.created AND s.validated_events = 1) AS reregistered
  FROM saved s
""".replace("{validator_columns}", VALIDATOR_COLUMNS)

# One validator's record; agreement_rate is consensus_accuracy in percent.
VALIDATOR_STATS = """
SELECT {validator_columns}
  FROM validator_performance
 WHERE validator_uid = %(validator_uid)s
""".replace("{validator_columns}", VALIDATOR_COLUMNS)

# Active validators, most accurate first (idx_validator_performance_active).
ACTIVE_VALIDATORS = """
SELECT {validator_columns}
  FROM validator_performance
 WHERE is_active
 ORDER BY consensus_accuracy DESC, validator_uid
 LIMIT %(limit)s
""".replace("{validator_columns}", VALIDATOR_COLUMNS)

# How many validators are active.
COUNT_ACTIVE = "SELECT count(*) FROM validator_performance WHERE is_active"

# Marks a validator inactive (its history stays; its next validation re-activates it).
DEACTIVATE = """
UPDATE validator_performance SET is_active = false
 WHERE validator_uid = %(validator_uid)s
RETURNING {validator_columns}
""".replace("{validator_columns}", VALIDATOR_COLUMNS)


class ValidatorRepository(Repository):
    """Reads and writes ``validator_performance`` on one async connection (the caller owns the transaction)."""

    async def record_validation(self, validator_uid: int, hotkey: str, *, agreed: bool, score_given: float,
                                stake: float | None = None, at: datetime | None = None) -> ValidatorUpdate:
        """Record one validation made by a validator (an upsert by uid, one statement).

        Args:
            validator_uid: an integer in 0..2**31-1.
            hotkey: 1..128 characters. A known uid with a different hotkey is a re-registered validator: its record
                restarts with this validation (counts, accuracy, mean score, stake, a new ``validator_id``) and the
                previous record goes to ``audit_log`` as ``REREGISTER``.
            agreed: ``True`` when its score agreed with the consensus (a real bool; 1/0 are refused).
            score_given: the score it gave, in [0, 1].
            stake: its current stake (>= 0); ``None`` keeps the stored stake (0 for a new record).
            at: when it validated (timezone-aware, not in the future); defaults to now.

        Returns:
            ``ValidatorUpdate``: the record after this validation, with ``created`` / ``reregistered``.

        Raises:
            ValidationError: naming the field, before any SQL; nothing is stored.

        Example::

            u = await validators.record_validation(7, "hk", agreed=True, score_given=0.8, stake=100.0)
            u.validated_events, u.consensus_accuracy      # (1, 1.0)
        """
        if not isinstance(agreed, bool):
            raise ValidationError("agreed", f"must be true or false, got {type(agreed).__name__}")
        params = {
            "validator_uid": v.uid("validator_uid", validator_uid),
            "hotkey": v.text("hotkey", hotkey, max_length=MAX_HOTKEY_LENGTH),
            "agreements": 1 if agreed else 0,
            "score_given": v.unit_interval("score_given", score_given),
            "stake": None if stake is None else v.number("stake", stake, minimum=0.0, maximum=MAX_STAKE),
            "at": None if at is None else v.aware_datetime("at", at),
        }
        row = await self._one(RECORD_VALIDATION, params, ValidatorUpdate)
        assert row is not None  # an upsert always returns its row
        return row

    async def stats(self, validator_uid: int) -> ValidatorStats | None:
        """One validator's record, or ``None`` for an unknown uid.

        Raises ``ValidationError`` (``validator_uid``) before any SQL.

        Example::

            s = await validators.stats(7)
            s.agreement_rate      # percent
        """
        params = {"validator_uid": v.uid("validator_uid", validator_uid)}
        return await self._one(VALIDATOR_STATS, params, ValidatorStats)

    async def active(self, *, limit: int = 100) -> list[ValidatorStats]:
        """Active validators, highest ``consensus_accuracy`` first, at most ``limit`` (1..10,000).

        Raises ``ValidationError`` (``limit``) before any SQL.

        Example::

            best = await validators.active(limit=10)
        """
        params = {"limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT)}
        return await self._all(ACTIVE_VALIDATORS, params, ValidatorStats)

    async def count_active(self) -> int:
        """How many validators are active (for ``get_database_stats``).

        Example::

            n = await validators.count_active()
        """
        return int(await self._value(COUNT_ACTIVE) or 0)

    async def deactivate(self, validator_uid: int) -> ValidatorStats:
        """Mark a validator inactive; returns its record. Idempotent.

        Raises:
            ValidationError: ``validator_uid`` is not a uid (before any SQL).
            NotFoundError: no validator has this uid.

        Example::

            await validators.deactivate(7)
        """
        params = {"validator_uid": v.uid("validator_uid", validator_uid)}
        return await self._found(DEACTIVATE, params, ValidatorStats,
                                 f"validator_uid: no validator with uid {params['validator_uid']}; it appears "
                                 "with its first validation (record_validation)")
