"""Consensus records: each validator's scores of an event in a round, kept for transparency.

There is one record per event × validator × round (the table's unique key). Storing the same record again is
idempotent and returns the first ``record_id``; storing *different* scores for a triple that already has a record
raises ``ConflictError`` naming the triple — a validator's judgement of a round is not silently rewritten, and a
retry of the same call stays harmless.

A record's ``final_score`` is, in this order: the ``final_score`` argument, ``scores["final"]``,
``scores["final_score"]``, or else the mean of all the scores.

Example::

    consensus = ConsensusRepository(conn)
    record_id = await consensus.store(event.event_id, 7, {"accuracy": 0.9, "relevance": 0.8}, round_number=12)
    summary = await consensus.summary(event.event_id)     # validators, mean, spread, agreement
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from psycopg import errors as pg
from psycopg.types.json import Jsonb

from luminar_store import validation as v
from luminar_store.errors import ConflictError, NotFoundError, ValidationError
from luminar_store.limits import AGREEMENT_TOLERANCE, MAX_HOURS, MAX_LIMIT, MAX_ROUND, MAX_SCORE_NAME, MAX_SCORES
from luminar_store.models import ConsensusAccuracy, ConsensusRecord, ConsensusSummary
from luminar_store.repositories._base import Repository

__all__ = [
    "ConsensusRepository",
    "AGREEMENT_TOLERANCE",
    "MAX_ROUND",
    "final_score_of",
    "validate_consensus_scores",
]

#: Keys of ``scores`` that name the final score directly, in order of preference.
FINAL_KEYS = ("final", "final_score")

# Inserts a record, or finds the one already stored for the triple, in one statement. `same` tells whether the
# stored record has these very scores (jsonb equality compares numbers by value: 0.50 = 0.5). A foreign-key
# violation means the event does not exist.
STORE_RECORD = """
WITH inserted AS (
    INSERT INTO consensus_records (event_id, validator_uid, consensus_round, scores, final_score)
    VALUES (%(event_id)s, %(validator_uid)s, %(round_number)s, %(scores)s, %(final_score)s)
    ON CONFLICT ON CONSTRAINT consensus_records_event_validator_round_key DO NOTHING
    RETURNING record_id
)
SELECT record_id, true AS inserted, true AS same FROM inserted
UNION ALL
SELECT record_id, false, scores = %(scores)s AND final_score = %(final_score)s
  FROM consensus_records
 WHERE event_id = %(event_id)s AND validator_uid = %(validator_uid)s AND consensus_round = %(round_number)s
   AND NOT EXISTS (SELECT 1 FROM inserted)
"""

# The stored record of a triple. Used when STORE_RECORD's snapshot could not see a record that a concurrent
# transaction committed while this one waited on the unique key: a new statement sees it.
EXISTING_RECORD = """
SELECT record_id, false AS inserted, scores = %(scores)s AND final_score = %(final_score)s AS same
  FROM consensus_records
 WHERE event_id = %(event_id)s AND validator_uid = %(validator_uid)s AND consensus_round = %(round_number)s
"""

# Per-event summary. `latest` keeps one record per validator: the round asked for, or each validator's latest
# round. The event row is read first so that an unknown event gives no row at all (NotFoundError), and an event
# without records gives validators = 0 and NULL scores.
EVENT_SUMMARY = """
WITH latest AS (
    SELECT DISTINCT ON (validator_uid) validator_uid, final_score
      FROM consensus_records
     WHERE event_id = %(event_id)s
       AND (%(round_number)s::integer IS NULL OR consensus_round = %(round_number)s::integer)
     ORDER BY validator_uid, consensus_round DESC
), stats AS (
    SELECT count(*) AS validators, avg(final_score) AS mean_score, stddev_pop(final_score) AS stddev_score,
           min(final_score) AS min_score, max(final_score) AS max_score
      FROM latest
)
SELECT ev.event_id, %(round_number)s::integer AS round_number, s.validators::integer AS validators,
       s.mean_score, s.stddev_score, s.min_score, s.max_score,
       (SELECT count(*) FILTER (WHERE score_agrees(l.final_score, s.mean_score, %(tolerance)s))::float8
               / nullif(count(*), 0)
          FROM latest l) AS agreement,
       %(tolerance)s::float8 AS agreement_tolerance
  FROM crime_events ev
 CROSS JOIN stats s
 WHERE ev.event_id = %(event_id)s
"""

# name: consensus_record_columns
# The columns of a ConsensusRecord, in its field order (the four score columns are generated from `scores`).
RECORD_COLUMNS = """record_id, event_id, validator_uid, consensus_round, scores, final_score, created_at,
       integrity_score, clustering_score, novelty_score, quality_score"""

# All records of one event, by round then validator.
RECORDS_FOR_EVENT = """
SELECT {record_columns}
  FROM consensus_records
 WHERE event_id = %(event_id)s
 ORDER BY consensus_round, validator_uid
""".replace("{record_columns}", RECORD_COLUMNS)

# One validator's records, newest first (idx_consensus_validator_time).
RECORDS_FOR_VALIDATOR = """
SELECT {record_columns}
  FROM consensus_records
 WHERE validator_uid = %(validator_uid)s
 ORDER BY created_at DESC, record_id
 LIMIT %(limit)s
""".replace("{record_columns}", RECORD_COLUMNS)

# Network-wide agreement over a window (idx_consensus_created_at): the schema's consensus_agreement(since,
# tolerance), the one definition of the figure (the statistics command reads it too).
NETWORK_ACCURACY = """
SELECT %(hours)s::integer AS hours, records, events, validators, agreement_rate,
       %(tolerance)s::float8 AS agreement_tolerance, compared
  FROM consensus_agreement(now() - make_interval(hours => %(hours)s), %(tolerance)s)
"""


def validate_consensus_scores(scores: Any, field: str = "scores") -> dict[str, float]:
    """A validator's scores: a non-empty mapping of names (1..64 characters) to numbers in [0, 1].

    Raises ``ValidationError`` naming ``scores`` or ``scores.<name>``.

    Example::

        >>> validate_consensus_scores({"accuracy": 1, "final": 0.75})
        {'accuracy': 1.0, 'final': 0.75}
    """
    if not isinstance(scores, Mapping):
        raise ValidationError(field, f"must be a mapping of score names to numbers in [0, 1], "
                                     f"got {type(scores).__name__}")
    if not scores:
        raise ValidationError(field, "must hold at least one score")
    if len(scores) > MAX_SCORES:
        raise ValidationError(field, f"must hold at most {MAX_SCORES} scores, got {len(scores)}")
    clean = {}
    for name, value in scores.items():
        key = v.text(f"{field} key", name, max_length=MAX_SCORE_NAME)
        clean[key] = v.unit_interval(f"{field}.{key}", value)
    return clean


def final_score_of(scores: Mapping[str, float]) -> float:
    """The final score of validated ``scores``: ``final``, else ``final_score``, else the mean of all scores."""
    for key in FINAL_KEYS:
        if key in scores:
            return scores[key]
    return min(1.0, max(0.0, sum(scores.values()) / len(scores)))


class ConsensusRepository(Repository):
    """Reads and writes ``consensus_records`` on one async connection (the caller owns the transaction)."""

    async def store(self, event_id: UUID | str, validator_uid: int, scores: Mapping[str, float],
                    round_number: int, *, final_score: float | None = None) -> UUID:
        """Store one validator's scores of an event in a round; idempotent.

        Args:
            event_id: the crime event (UUID or its text form).
            validator_uid: an integer in 0..2**31-1.
            scores: score names to numbers in [0, 1] (at least one, at most 64).
            round_number: an integer in 0..2**31-1 (stored as the record's ``consensus_round``).
            final_score: the record's final score in [0, 1]; by default ``scores["final"]``, else
                ``scores["final_score"]``, else the mean of the scores.

        Returns:
            The ``record_id`` (``uuid.UUID``): a new one, or the existing one when this very record (same scores,
            same final score) was stored before.

        Raises:
            ValidationError: naming the field, before any SQL; nothing is stored.
            NotFoundError: no crime event has this ``event_id``.
            ConflictError: the triple (event, validator, round) already has a record with other scores.

        Example::

            record_id = await consensus.store(event_id, 7, {"integrity": 0.9, "final": 0.85}, 12)
            assert await consensus.store(event_id, 7, {"integrity": 0.9, "final": 0.85}, 12) == record_id
        """
        clean = validate_consensus_scores(scores)
        params = {
            "event_id": v.uuid_value("event_id", event_id),
            "validator_uid": v.uid("validator_uid", validator_uid),
            "round_number": v.integer("round_number", round_number, minimum=0, maximum=MAX_ROUND),
            "scores": Jsonb(clean),
            "final_score": final_score_of(clean) if final_score is None
            else v.unit_interval("final_score", final_score),
        }
        async with self._connection() as conn:
            try:
                cur = await conn.execute(STORE_RECORD, params)
                row = await cur.fetchone()
                if row is None:
                    cur = await conn.execute(EXISTING_RECORD, params)
                    row = await cur.fetchone()
            except pg.ForeignKeyViolation:
                raise NotFoundError(f"event_id: no crime event {params['event_id']}; store the event first") from None
        if row is None:  # the record was deleted between the two statements (its event was deleted)
            raise NotFoundError(f"event_id: no crime event {params['event_id']}; store the event first")
        record_id, _inserted, same = row
        if not same:
            raise ConflictError(
                f"consensus record (event_id={params['event_id']}, validator_uid={params['validator_uid']}, "
                f"round_number={params['round_number']}) already exists with other scores; a validator scores an "
                "event once per round (use the next round_number)")
        return record_id

    async def summary(self, event_id: UUID | str, *, round_number: int | None = None) -> ConsensusSummary:
        """How validators judged one event: count, mean, spread, min/max and agreement of their final scores.

        Each validator counts once: with its record of ``round_number`` if given, else its latest round.
        ``agreement`` is the share (0..1) of those validators whose final score lies within
        ``AGREEMENT_TOLERANCE`` (0.1) of the mean; ``stddev_score`` is the population standard deviation.

        Returns:
            ``ConsensusSummary``; ``validators == 0`` and ``None`` scores when nobody has scored the event yet.

        Raises:
            ValidationError: ``event_id`` / ``round_number`` malformed (before any SQL).
            NotFoundError: no crime event has this ``event_id``.

        Example::

            s = await consensus.summary(event_id)
            s.validators, s.mean_score, s.stddev_score, s.agreement     # (3, 0.8, 0.0816..., 1.0)
        """
        params = {
            "event_id": v.uuid_value("event_id", event_id),
            "round_number": None if round_number is None
            else v.integer("round_number", round_number, minimum=0, maximum=MAX_ROUND),
            "tolerance": AGREEMENT_TOLERANCE,
        }
        return await self._found(EVENT_SUMMARY, params, ConsensusSummary,
                                 f"event_id: no crime event {params['event_id']}")

    async def for_event(self, event_id: UUID | str) -> list[ConsensusRecord]:
        """All consensus records of one event, by round then validator (empty for an unknown event).

        Raises ``ValidationError`` (``event_id``) before any SQL.

        Example::

            for record in await consensus.for_event(event_id): print(record.validator_uid, record.final_score)
        """
        params = {"event_id": v.uuid_value("event_id", event_id)}
        return await self._all(RECORDS_FOR_EVENT, params, ConsensusRecord)

    async def for_validator(self, validator_uid: int, *, limit: int = 100) -> list[ConsensusRecord]:
        """One validator's consensus records, newest first, at most ``limit`` (1..10,000).

        Raises ``ValidationError`` (``validator_uid``, ``limit``) before any SQL.

        Example::

            recent = await consensus.for_validator(7, limit=20)
        """
        params = {"validator_uid": v.uid("validator_uid", validator_uid),
                  "limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT)}
        return await self._all(RECORDS_FOR_VALIDATOR, params, ConsensusRecord)

    async def accuracy(self, *, hours: int = 24) -> ConsensusAccuracy:
        """Validator agreement across the network over the last ``hours`` (1..87,600): the spec's "Consensus
        Accuracy: validator agreement %", as the SQL function ``consensus_agreement`` defines it.

        The records of one event and round stored in the window are compared with their mean final score; only
        rounds judged by at least two validators are compared (a lone score would agree with itself).
        ``agreement_rate`` is the percentage of compared records within ``AGREEMENT_TOLERANCE`` (0.1) of their
        round's mean — ``None`` when nothing was compared.

        Raises ``ValidationError`` (``hours``) before any SQL.

        Example::

            acc = await consensus.accuracy(hours=24)
            print(f"{acc.agreement_rate}% of {acc.records} records agree")
        """
        params = {"hours": v.integer("hours", hours, minimum=1, maximum=MAX_HOURS), "tolerance": AGREEMENT_TOLERANCE}
        row = await self._one(NETWORK_ACCURACY, params, ConsensusAccuracy)
        assert row is not None  # an aggregate always returns a row
        return row
