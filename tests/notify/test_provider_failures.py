"""What the notifier does about each kind of provider failure: the provider names the
kind from its own error code; a spent daily limit or an account that cannot send sets
the provider aside (for every worker, shown to staff), "too fast" is only paced."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from huimin.db import Database
from notify.models import OutboxMessage, ProviderStatus
from notify.plan import plan
from notify.providers import aliyun as aliyun_codes
from notify.providers import tencent as tencent_codes
from notify.providers.aliyun import AliyunSms
from notify.providers.tencent import TencentSms
from notify.rules import DatabasePhoneLimiter, PhoneCaps
from notify.sms import FailureKind, ProviderUnavailable, SmsProvider
from notify.worker import Worker, next_china_midnight
from tests.fakes.sms_servers import AliyunFake, TencentFake
from tests.notify.test_outbox import COUNTY, DAYTIME, VAULT, add_payout, add_person
from tests.notify.test_sms_providers import make_aliyun, make_tencent

SIGN = "示例县民政局"
# DAYTIME is 10:00 on 1 December in China: the daily limits reset at 00:00 on the 2nd.
CHINA_MIDNIGHT = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
NEXT_MORNING = DAYTIME + timedelta(days=1)  # 10:00 on the 2nd, outside quiet hours


@pytest.mark.parametrize(("code", "kind"), [
    ("RequestLimitExceeded", FailureKind.THROTTLED),
    ("RequestLimitExceeded.UinLimitExceeded", FailureKind.THROTTLED),
    ("LimitExceeded.AppDailyLimit", FailureKind.DAILY_QUOTA),
    ("LimitExceeded.DailyLimit", FailureKind.DAILY_QUOTA),
    ("FailedOperation.InsufficientBalanceInSmsPackage", FailureKind.ACCOUNT),
    ("UnauthorizedOperation.SerivceSuspendDueToArrears", FailureKind.ACCOUNT),
    ("UnauthorizedOperation.RequestPermissionDeny", FailureKind.ACCOUNT),
    ("LimitExceeded.PhoneNumberDailyLimit", FailureKind.REFUSED),
    ("LimitExceeded.PhoneNumberThirtySecondLimit", FailureKind.REFUSED),
    ("InvalidParameterValue.IncorrectPhoneNumber", FailureKind.REFUSED),
    ("InternalError.Timeout", FailureKind.UNREACHABLE),
])
def test_tencent_codes_name_their_kind(code: str, kind: FailureKind) -> None:
    assert tencent_codes.failure_kind(code) is kind


@pytest.mark.parametrize(("code", "kind"), [
    ("Throttling.User", FailureKind.THROTTLED),
    ("Throttling", FailureKind.THROTTLED),
    ("isv.DAY_LIMIT_CONTROL", FailureKind.DAILY_QUOTA),
    ("isv.MONTH_LIMIT_CONTROL", FailureKind.ACCOUNT),
    ("isv.AMOUNT_NOT_ENOUGH", FailureKind.ACCOUNT),
    ("isv.OUT_OF_SERVICE", FailureKind.ACCOUNT),
    ("isp.RAM_PERMISSION_DENY", FailureKind.ACCOUNT),
    ("isv.BUSINESS_LIMIT_CONTROL", FailureKind.REFUSED),  # one number, per minute/hour/day
    ("isv.MOBILE_NUMBER_ILLEGAL", FailureKind.REFUSED),
    ("isp.SYSTEM_ERROR", FailureKind.UNREACHABLE),
])
def test_aliyun_codes_name_their_kind(code: str, kind: FailureKind) -> None:
    assert aliyun_codes.failure_kind(code) is kind


def test_daily_limits_reset_at_china_midnight() -> None:
    assert next_china_midnight(DAYTIME) == CHINA_MIDNIGHT
    just_before = CHINA_MIDNIGHT - timedelta(seconds=1)
    assert next_china_midnight(just_before) == CHINA_MIDNIGHT
    assert next_china_midnight(CHINA_MIDNIGHT) == CHINA_MIDNIGHT + timedelta(days=1)


@pytest.fixture
async def fakes(aiohttp_server: Any) -> AsyncIterator[tuple[TencentFake, AliyunFake]]:
    tencent, aliyun = TencentFake(), AliyunFake()
    await tencent.start(aiohttp_server)
    await aliyun.start(aiohttp_server)
    yield tencent, aliyun
    assert tencent.problems == [] and aliyun.problems == []


@pytest.fixture
async def providers(fakes: tuple[TencentFake, AliyunFake]
                    ) -> AsyncIterator[tuple[TencentSms, AliyunSms]]:
    tencent = make_tencent(fakes[0].base_url, templates={"payout": "1000001"}, sign_name=SIGN)
    aliyun = make_aliyun(fakes[1].base_url, templates={"payout": "SMS_1"}, sign_name=SIGN)
    yield tencent, aliyun
    await tencent.close()
    await aliyun.close()


class Clock:
    """The workers' clock, moved on by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_worker(db: Database, sms: list[SmsProvider], clock: Callable[[], datetime]) -> Worker:
    return Worker.assemble(db, VAULT, COUNTY, sms,
                           DatabasePhoneLimiter(db, PhoneCaps(spacing=timedelta(0))),
                           clock=clock)


async def two_payouts(db: Database) -> None:
    for index in range(2):
        await add_payout(db, await add_person(db, index))
    await plan(db, now=DAYTIME)


async def rows(db: Database) -> list[OutboxMessage]:
    async with db.session() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
                    .all())


async def statuses(db: Database) -> dict[str, ProviderStatus]:
    async with db.session() as session:
        return {s.provider: s for s in (await session.scalars(select(ProviderStatus))).all()}


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def test_the_providers_report_a_spent_daily_limit_by_its_kind(
        fakes: tuple[TencentFake, AliyunFake], providers: tuple[TencentSms, AliyunSms]) -> None:
    from notify.sms import sms_message

    tencent_fake, aliyun_fake = fakes
    tencent_fake.daily_limit = aliyun_fake.daily_limit = 0
    message = sms_message("payout", COUNTY, "13800138000",
                          {"programme": "低保", "month": "11月", "amount": "625.00"})
    for provider, code in zip(providers, ["LimitExceeded.AppDailyLimit",
                                          "isv.DAY_LIMIT_CONTROL"], strict=True):
        with pytest.raises(ProviderUnavailable) as raised:
            await provider.send([message])
        assert raised.value.kind is FailureKind.DAILY_QUOTA and raised.value.code == code


async def test_tencent_daily_limit_sets_it_aside_and_aliyun_sends(
        db: Database, fakes: tuple[TencentFake, AliyunFake],
        providers: tuple[TencentSms, AliyunSms], caplog: pytest.LogCaptureFixture) -> None:
    """Tencent says its app's daily limit is spent: Tencent is set aside until midnight
    China time (recorded for every worker), Alibaba Cloud sends the reminders in the same
    run, and later batches that day do not try Tencent again."""
    tencent_fake, aliyun_fake = fakes
    tencent_fake.daily_limit = 0
    await two_payouts(db)
    clock = Clock(DAYTIME)
    with caplog.at_level(logging.WARNING, logger="notify.worker"):
        summary = await make_worker(db, list(providers), clock).run(once=True)
    assert summary.sent == 2
    assert len(tencent_fake.send_calls) == 1 and len(aliyun_fake.send_calls) == 1
    assert [r.provider for r in await rows(db)] == ["aliyun", "aliyun"]
    [status] = (await statuses(db)).values()
    assert status.provider == "tencent" and status.kind == "daily_quota"
    assert status.reason.startswith("LimitExceeded.AppDailyLimit")
    assert aware(status.aside_until) == CHINA_MIDNIGHT
    assert "set aside until 2026-12-02 00:00 China time" in caplog.text
    # Another worker (another process) the same afternoon: straight to Alibaba Cloud.
    async with db.session() as session:
        for message in (await session.scalars(select(OutboxMessage))).all():
            message.state, message.key = "queued", message.key + ":again"
    clock.now = DAYTIME + timedelta(hours=4)
    assert (await make_worker(db, list(providers), clock).run(once=True)).sent == 2
    assert len(tencent_fake.send_calls) == 1 and len(aliyun_fake.send_calls) == 2


async def test_a_limit_spent_in_the_middle_of_a_call_keeps_what_went_out(
        db: Database, fakes: tuple[TencentFake, AliyunFake],
        providers: tuple[TencentSms, AliyunSms]) -> None:
    """Tencent takes the first number of a call and refuses the second with
    AppDailyLimit: the first stays sent by Tencent, the second goes by Alibaba Cloud."""
    tencent_fake, aliyun_fake = fakes
    tencent_fake.daily_limit = 1
    await two_payouts(db)
    summary = await make_worker(db, list(providers), Clock(DAYTIME)).run(once=True)
    assert summary.sent == 2
    assert sorted(r.provider or "" for r in await rows(db)) == ["aliyun", "tencent"]
    assert len(aliyun_fake.delivered) == 1
    assert (await statuses(db))["tencent"].kind == "daily_quota"


async def test_with_no_other_provider_the_reminders_wait_for_midnight_without_spinning(
        db: Database, fakes: tuple[TencentFake, AliyunFake],
        providers: tuple[TencentSms, AliyunSms]) -> None:
    """Tencent alone, its daily limit spent: the reminders wait until the limit resets,
    spending no attempt; no worker calls Tencent again before then however often it
    looks; the next morning they go out."""
    tencent_fake, _ = fakes
    tencent, _ = providers
    tencent_fake.daily_limit = 0
    await two_payouts(db)
    clock = Clock(DAYTIME)
    summary = await make_worker(db, [tencent], clock).run(once=True)
    assert summary.sent == 0 and summary.rescheduled == 2 and not summary.failed
    assert len(tencent_fake.send_calls) == 1
    for row in await rows(db):
        assert row.state == "queued" and row.attempts == 0
        assert aware(row.not_before) == CHINA_MIDNIGHT
        assert row.last_error and row.last_error.startswith("tencent: LimitExceeded.AppDailyLimit")
    # All afternoon, this worker and fresh ones find nothing to send and call nobody.
    same = make_worker(db, [tencent], clock)
    for hours in (1, 3, 5):
        clock.now = DAYTIME + timedelta(hours=hours)
        assert (await same.run(once=True)).sent == 0
        assert (await make_worker(db, [tencent], clock).run(once=True)).sent == 0
    assert len(tencent_fake.send_calls) == 1
    # A message queued meanwhile waits too, without a call.
    async with db.session() as session:
        session.add(OutboxMessage(key="extra", kind="payout", beneficiary_id=(await rows(db))[0]
                                  .beneficiary_id, params={"programme": "低保", "month": "12月",
                                                           "amount": "625.00"},
                                  not_before=clock.now))
    assert (await make_worker(db, [tencent], clock).run(once=True)).sent == 0
    assert len(tencent_fake.send_calls) == 1
    # The next morning the limit has reset.
    tencent_fake.daily_limit = None
    clock.now = NEXT_MORNING
    assert (await make_worker(db, [tencent], clock).run(once=True)).sent == 3
    assert {r.state for r in await rows(db)} == {"sent"}


async def test_an_account_that_cannot_send_is_set_aside_for_an_hour_with_a_clear_log(
        db: Database, fakes: tuple[TencentFake, AliyunFake],
        providers: tuple[TencentSms, AliyunSms], caplog: pytest.LogCaptureFixture) -> None:
    tencent_fake, _ = fakes
    tencent, _ = providers
    for phone in ("13800138000", "13800131001"):
        tencent_fake.codes[phone] = "FailedOperation.InsufficientBalanceInSmsPackage"
    await two_payouts(db)
    clock = Clock(DAYTIME)
    with caplog.at_level(logging.WARNING, logger="notify.worker"):
        await make_worker(db, [tencent], clock).run(once=True)
    [record] = [r for r in caplog.records if "set aside" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "account cannot send" in record.getMessage()
    assert "InsufficientBalanceInSmsPackage" in record.getMessage()
    status = (await statuses(db))["tencent"]
    assert status.kind == "account"
    assert aware(status.aside_until) == DAYTIME + timedelta(hours=1)
    assert {r.attempts for r in await rows(db)} == {0}
    # Topped up: after the hour it is tried again and sends.
    tencent_fake.codes.clear()
    clock.now = DAYTIME + timedelta(hours=1, minutes=1)
    assert (await make_worker(db, [tencent], clock).run(once=True)).sent == 2
    assert len(tencent_fake.send_calls) == 2


async def test_aliyun_throttling_is_paced_not_set_aside(
        db: Database, fakes: tuple[TencentFake, AliyunFake],
        providers: tuple[TencentSms, AliyunSms]) -> None:
    """The gateway's Throttling.User (API calls too frequent) twice: asked again after a
    pause and sent, the provider never counted as failing."""
    _, aliyun_fake = fakes
    _, aliyun = providers
    aliyun_fake.fail(times=2, status=400, code="Throttling.User",
                     message="Request was denied due to user flow control.")
    await two_payouts(db)
    sender = make_worker(db, [aliyun], Clock(DAYTIME))
    assert (await sender.run(once=True)).sent == 2
    assert len(aliyun_fake.send_calls) == 3
    assert sender.health.usable("aliyun") and not sender.health.failures.get("aliyun")
    assert await statuses(db) == {}


async def test_a_per_number_limit_retries_that_message_only(
        db: Database, fakes: tuple[TencentFake, AliyunFake],
        providers: tuple[TencentSms, AliyunSms]) -> None:
    """isv.BUSINESS_LIMIT_CONTROL is Alibaba Cloud's limit per number (per minute, hour
    or day): that message is retried later as usual, the provider stays in use."""
    _, aliyun_fake = fakes
    _, aliyun = providers
    aliyun_fake.codes["13800131001"] = "isv.BUSINESS_LIMIT_CONTROL"
    await two_payouts(db)
    sender = make_worker(db, [aliyun], Clock(DAYTIME))
    summary = await sender.run(once=True)
    assert summary.sent == 1 and summary.rescheduled == 1
    waiting = [r for r in await rows(db) if r.state == "queued"]
    assert [r.attempts for r in waiting] == [1]
    assert aware(waiting[0].not_before) == DAYTIME + timedelta(seconds=30)
    assert sender.health.usable("aliyun") and await statuses(db) == {}
