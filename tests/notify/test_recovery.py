"""A worker that dies mid-send: the next one asks the providers what went out.

The worker here really stops at the worst moment (after the provider accepted the
SMS, before the outbox row says so) by way of a provider whose process "dies" right
after the real call; the survivor must find that SMS in the provider's own records
(Tencent ``DescribeSendRecordList``, Alibaba ``QuerySendDetails``, served by the
protocol-checking fakes) and send nothing twice. Verification codes, which go
through the same outbox as urgent messages, are checked at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from huimin.clock import utcnow
from huimin.db import Database
from notify.models import OptOut, OutboxMessage
from notify.plan import plan, queue_verification_code
from notify.providers.aliyun import AliyunSms
from notify.providers.tencent import TencentSms
from notify.receipts import opt_out
from notify.sms import SmsMessage, SmsResult, provider_template_text
from tests.fakes.sms_servers import AliyunFake, TencentFake
from tests.notify.test_outbox import (
    COUNTY,
    DAYTIME,
    NIGHT,
    VAULT,
    add_payout,
    add_person,
    sent_sms,
    states,
    worker,
)
from tests.notify.test_sms_providers import make_aliyun, make_tencent

TENCENT_IDS = {"payout": "1000001", "verification_code": "1000009"}
ALIYUN_CODES = {"payout": "SMS_1", "verification_code": "SMS_9"}
LATER = DAYTIME + timedelta(minutes=5)  # the survivor's clock: the claims are stale


class Died(BaseException):
    """The worker's process ended here (as SIGKILL would end it)."""


class DiesAfterSending:
    """A real provider, in a process that dies right after (or before) its first call."""

    def __init__(self, provider: Any, before: bool = False) -> None:
        self.provider, self.before, self.name = provider, before, provider.name

    async def send(self, messages: Sequence[SmsMessage]) -> list[SmsResult]:
        if self.before:
            raise Died
        await self.provider.send(messages)
        raise Died


async def tencent_setup(aiohttp_server: Any) -> tuple[TencentFake, TencentSms]:
    fake = TencentFake(template_texts={
        TENCENT_IDS[name]: provider_template_text(name, COUNTY) for name in TENCENT_IDS})
    await fake.start(aiohttp_server)
    return fake, make_tencent(fake.base_url, templates=TENCENT_IDS,
                              sign_name=COUNTY["sms_signature"])


async def aliyun_setup(aiohttp_server: Any) -> tuple[AliyunFake, AliyunSms]:
    fake = AliyunFake(template_texts={
        ALIYUN_CODES[name]: provider_template_text(name, COUNTY, "aliyun")
        for name in ALIYUN_CODES})
    await fake.start(aiohttp_server)
    return fake, make_aliyun(fake.base_url, templates=ALIYUN_CODES,
                             sign_name=COUNTY["sms_signature"])


async def two_payouts(db: Database) -> None:
    for index in range(2):
        await add_payout(db, await add_person(db, index))
    await plan(db, now=DAYTIME)


async def die_while_sending(db: Database, tmp_path: Path, provider: Any,
                            before: bool = False) -> None:
    with pytest.raises(Died):
        await worker(db, tmp_path, name="dies", sms=DiesAfterSending(provider, before)).run(
            once=True)
    assert set((await states(db)).values()) == {"sending"}


async def outbox(db: Database) -> list[OutboxMessage]:
    async with db.session() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


@pytest.mark.parametrize("setup", [tencent_setup, aliyun_setup], ids=["tencent", "aliyun"])
async def test_killed_after_the_provider_took_it_nothing_is_sent_twice(
        db: Database, tmp_path: Path, aiohttp_server, setup) -> None:  # type: ignore[no-untyped-def]
    fake, provider = await setup(aiohttp_server)
    try:
        await two_payouts(db)
        await die_while_sending(db, tmp_path, provider)
        assert len(fake.delivered) == 2
        survivor = worker(db, tmp_path, clock=LATER, sms=provider)
        summary = await survivor.run(once=True)
        assert summary.found_sent == 2 and summary.sent == 0 and summary.requeued == 0
        assert len(fake.delivered) == 2  # nobody got it twice
        rows = await outbox(db)
        assert {r.state for r in rows} == {"sent"}
        assert {r.provider for r in rows} == {provider.name}
        if provider.name == "tencent":  # Tencent's record carries the message id
            assert sorted(r.provider_message_id for r in rows) == sorted(
                d["serial"] for d in fake.delivered)
        assert all(r.sms_started_at is None and r.claimed_by is None for r in rows)
        assert fake.problems == []
    finally:
        await provider.close()


@pytest.mark.parametrize("setup", [tencent_setup, aliyun_setup], ids=["tencent", "aliyun"])
async def test_killed_before_the_call_the_survivor_sends_once(
        db: Database, tmp_path: Path, aiohttp_server, setup) -> None:  # type: ignore[no-untyped-def]
    fake, provider = await setup(aiohttp_server)
    try:
        await two_payouts(db)
        await die_while_sending(db, tmp_path, provider, before=True)
        assert fake.delivered == []
        summary = await worker(db, tmp_path, clock=LATER, sms=provider).run(once=True)
        assert summary.requeued == 2 and summary.sent == 2
        assert sorted(d["phone"][-11:] for d in fake.delivered) == [
            "13800131001", "13800138000"]
        assert set((await states(db)).values()) == {"sent"}
        assert fake.problems == []
    finally:
        await provider.close()


async def test_an_earlier_message_of_the_same_kind_is_not_taken_for_the_lost_one(
        db: Database, tmp_path: Path, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    """October's payout SMS went out a moment before; November's call never happened.
    Tencent's records show October's (same template, same phone, same minute): it must
    not be taken for November's, which is then sent."""
    fake, provider = await tencent_setup(aiohttp_server)
    try:
        person = await add_person(db, 0)
        await add_payout(db, person, "2026-10")
        await plan(db, now=DAYTIME)
        assert (await worker(db, tmp_path, sms=provider).run(once=True)).sent == 1
        await add_payout(db, person, "2026-11")
        await plan(db, now=DAYTIME)
        with pytest.raises(Died):
            await worker(db, tmp_path, name="dies",
                         sms=DiesAfterSending(provider, before=True)).run(once=True)
        summary = await worker(db, tmp_path, clock=LATER, sms=provider).run(once=True)
        assert summary.found_sent == 0 and summary.sent == 1
        texts = [fake.content(d["sign"], d["template"], d["params"]) for d in fake.delivered]
        assert len(texts) == 2 and "10月" in texts[0] and "11月" in texts[1]
    finally:
        await provider.close()


async def test_while_the_provider_cannot_be_asked_the_claim_waits(
        db: Database, tmp_path: Path, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    fake, provider = await tencent_setup(aiohttp_server)
    try:
        await two_payouts(db)
        await die_while_sending(db, tmp_path, provider)
        fake.fail(times=2, status=503)  # both lookups fail
        survivor = worker(db, tmp_path, clock=LATER, sms=provider)
        assert await survivor.sweep() == 0
        assert set((await states(db)).values()) == {"sending"}  # not resent blind
        assert await survivor.sweep() == 2  # the provider answers again
        assert set((await states(db)).values()) == {"sent"}
        assert len(fake.delivered) == 2
        # Past give_up_lookup a claim nobody can check goes back to the queue.
        async with db.session() as session:
            await session.execute(update(OutboxMessage).values(
                state="sending", claimed_at=DAYTIME,
                sms_started_at=utcnow() - timedelta(hours=2)))
        fake.fail(times=2, status=503)
        assert await survivor.sweep() == 2
        assert set((await states(db)).values()) == {"queued"}
    finally:
        await provider.close()


# ----- verification codes: urgent outbox messages ---------------------------------------
async def queue_code(db: Database, person: int, now: datetime,
                     expires_at: datetime | None = None, code: str = "246810") -> None:
    """Queue a code issued at ``now`` (lapsing five minutes later unless told otherwise)."""
    await queue_verification_code(db, VAULT, beneficiary_id=person, code=code, code_id=1,
                                  now=now, expires_at=expires_at or now + timedelta(minutes=5))


async def test_a_code_goes_out_at_night_past_opt_outs_and_is_not_stored_in_clear(
        db: Database, tmp_path: Path) -> None:
    person = await add_person(db, 0)
    phone_hash = VAULT.lookup_hash("13800138000")
    await opt_out(db, "sms", phone_hash, "sms_reply")
    await queue_code(db, person, now=NIGHT)
    [row] = await outbox(db)
    assert row.urgent and "246810" not in str(row.params)
    summary = await worker(db, tmp_path, clock=NIGHT).run(once=True)
    assert summary.sent == 1
    [sms] = sent_sms(tmp_path)
    assert "246810" in sms["text"] and sms["to"] == "138****8000"
    async with db.session() as session:
        assert await session.scalar(select(OptOut.id)) is not None  # still opted out


async def test_an_expired_code_is_never_sent(db: Database, tmp_path: Path) -> None:
    person = await add_person(db, 0)
    await queue_code(db, person, now=DAYTIME - timedelta(minutes=5),
                     expires_at=DAYTIME - timedelta(seconds=1))
    summary = await worker(db, tmp_path, clock=DAYTIME).run(once=True)
    assert summary.sent == 0 and summary.skipped == 1
    assert sent_sms(tmp_path) == []
    [row] = await outbox(db)
    assert (row.state, row.last_error) == ("skipped", "expired")
    # The sweeper then drops the lapsed code from the row altogether.
    await worker(db, tmp_path, clock=DAYTIME).sweep()
    [row] = await outbox(db)
    assert row.params == {}


async def test_the_urgent_courier_takes_codes_and_leaves_reminders(
        db: Database, tmp_path: Path) -> None:
    person = await add_person(db, 0)
    await add_payout(db, person)
    await plan(db, now=DAYTIME)
    await queue_code(db, person, now=DAYTIME)
    courier = worker(db, tmp_path, urgent_only=True)
    assert (await courier.run(once=True)).sent == 1
    assert {r.kind: r.state for r in await outbox(db)} == {
        "payout": "queued", "verification_code": "sent"}
