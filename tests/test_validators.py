"""ValidatorRepository against the real database: validations, accuracy, stake, re-registration, active ones."""

from __future__ import annotations

import math

import pytest
from _async import count_rows, run_with_conn

from luminar_store.errors import NotFoundError, ValidationError
from luminar_store.repositories.validators import ValidatorRepository


def test_validations_accumulate(db_conninfo):
    async def body(conn):
        validators = ValidatorRepository(conn)
        first = await validators.record_validation(7, "vk7", agreed=True, score_given=0.8, stake=1500.0)
        assert first.created is True and first.reregistered is False
        assert (first.validated_events, first.agreements, first.consensus_accuracy) == (1, 1, 1.0)
        assert first.stake_amount == 1500.0 and first.avg_score_given == pytest.approx(0.8)

        await validators.record_validation(7, "vk7", agreed=False, score_given=0.4)
        await validators.record_validation(7, "vk7", agreed=True, score_given=0.6)
        last = await validators.record_validation(7, "vk7", agreed=False, score_given=0.2, stake=1600.0)
        assert last.created is False and last.reregistered is False
        assert (last.validated_events, last.agreements) == (4, 2)
        assert last.consensus_accuracy == pytest.approx(0.5) and last.agreement_rate == 50.0
        assert last.avg_score_given == pytest.approx(0.5)
        assert last.stake_amount == 1600.0
        assert last.validator_id == first.validator_id

        stats = await validators.stats(7)
        assert stats.validated_events == 4 and stats.agreement_rate == 50.0 and stats.stake_amount == 1600.0
        assert await validators.stats(8) is None

    run_with_conn(db_conninfo, body)


def test_stake_is_kept_when_not_given(db_conninfo):
    async def body(conn):
        validators = ValidatorRepository(conn)
        await validators.record_validation(1, "vk", agreed=True, score_given=0.5, stake=10)
        kept = await validators.record_validation(1, "vk", agreed=True, score_given=0.5)
        assert kept.stake_amount == 10.0
        fresh = await validators.record_validation(2, "vk2", agreed=True, score_given=0.5)
        assert fresh.stake_amount == 0.0

    run_with_conn(db_conninfo, body)


def test_reregistration_starts_a_fresh_record_and_is_audited(db_conninfo):
    async def body(conn):
        validators = ValidatorRepository(conn)
        old = await validators.record_validation(3, "old", agreed=True, score_given=0.9, stake=500)
        await validators.record_validation(3, "old", agreed=False, score_given=0.1)
        fresh = await validators.record_validation(3, "new", agreed=False, score_given=0.3)
        assert fresh.reregistered is True and fresh.created is False
        assert (fresh.hotkey, fresh.validated_events, fresh.agreements, fresh.consensus_accuracy) == ("new", 1, 0, 0)
        assert fresh.stake_amount == 0.0 and fresh.avg_score_given == pytest.approx(0.3)
        assert fresh.validator_id != old.validator_id

        cur = await conn.execute("SELECT row_id, old_data, new_data FROM audit_log"
                                 " WHERE table_name = 'validator_performance' AND operation = 'REREGISTER'")
        [(row_id, before, after)] = await cur.fetchall()
        assert row_id == "3"
        assert before["hotkey"] == "old" and before["validated_events"] == 2 and before["stake_amount"] == 500
        assert after["hotkey"] == "new" and after["validated_events"] == 1 and "created" not in after

        again = await validators.record_validation(3, "new", agreed=True, score_given=0.5)
        assert again.reregistered is False and again.validated_events == 2
        cur = await conn.execute("SELECT count(*) FROM audit_log WHERE operation = 'REREGISTER'")
        assert (await cur.fetchone())[0] == 1

    run_with_conn(db_conninfo, body)


def test_active_count_and_deactivate(db_conninfo):
    async def body(conn):
        validators = ValidatorRepository(conn)
        await validators.record_validation(1, "a", agreed=True, score_given=0.5)  # accuracy 1
        await validators.record_validation(2, "b", agreed=False, score_given=0.5)  # accuracy 0
        await validators.record_validation(3, "c", agreed=True, score_given=0.5)
        await validators.record_validation(3, "c", agreed=False, score_given=0.5)  # accuracy 0.5
        assert [s.validator_uid for s in await validators.active()] == [1, 3, 2]
        assert [s.validator_uid for s in await validators.active(limit=2)] == [1, 3]
        assert await validators.count_active() == 3
        gone = await validators.deactivate(3)
        assert gone.is_active is False and gone.validated_events == 2
        assert [s.validator_uid for s in await validators.active()] == [1, 2]
        assert await validators.count_active() == 2
        with pytest.raises(NotFoundError, match="validator_uid"):
            await validators.deactivate(99)

    run_with_conn(db_conninfo, body)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"validator_uid": -1}, "validator_uid"),
        ({"validator_uid": "7"}, "validator_uid"),
        ({"hotkey": ""}, "hotkey"),
        ({"hotkey": "k" * 129}, "hotkey"),
        ({"agreed": 1}, "agreed"),
        ({"agreed": "yes"}, "agreed"),
        ({"score_given": 1.01}, "score_given"),
        ({"score_given": math.nan}, "score_given"),
        ({"stake": -5}, "stake"),
        ({"stake": math.inf}, "stake"),
    ],
)
def test_bad_validation_is_refused_and_nothing_is_stored(db_conninfo, kwargs, field):
    async def body(conn):
        args = {"validator_uid": 1, "hotkey": "vk", "agreed": True, "score_given": 0.5, "stake": 1.0, **kwargs}
        with pytest.raises(ValidationError) as info:
            await ValidatorRepository(conn).record_validation(
                args.pop("validator_uid"), args.pop("hotkey"), **args)
        assert info.value.field == field
        assert await count_rows(conn, "validator_performance") == 0

    run_with_conn(db_conninfo, body)
