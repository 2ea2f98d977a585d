"""The per-message decision on its own: message, recipient and time in, one of send by
WeChat / send by SMS / hold until / skip out. No database, no network, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from notify.decide import (
    BySms,
    ByWeChat,
    Claimed,
    Hold,
    Outcome,
    Recipient,
    RetryPolicy,
    Skip,
    decide,
    retry_later,
)
from notify.rules import QuietHours

DAYTIME = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
NIGHT = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)  # 22:00 in Beijing
MORNING = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)  # 08:00 in Beijing, the end of quiet hours
QUIET = QuietHours()
WECHAT_KINDS = frozenset({"payout"})

PAYOUT = Claimed(id=1, key="payout:1:低保:2026-11", kind="payout", beneficiary_id=7,
                 urgent=False, params={"amount": "625.00"}, attempts=0)
CODE = Claimed(id=2, key="code:1", kind="verification_code", beneficiary_id=7, urgent=True,
               params={"code": "sealed"}, attempts=0,
               expires_at=DAYTIME + timedelta(minutes=5))
FOLLOWER = Recipient(openids=["o-self"], self_opted_out=False, phone="13800138000",
                     phone_hash="h", sms_opted_out=False)
PHONE_ONLY = Recipient(openids=[], self_opted_out=False, phone="13800138000", phone_hash="h",
                       sms_opted_out=False)


def ask(message: Claimed = PAYOUT, recipient: Recipient | None = FOLLOWER,
        now: datetime = DAYTIME, **options: object) -> object:
    return decide(message, recipient, now, quiet=QUIET,
                  wechat_kinds=options.pop("wechat_kinds", WECHAT_KINDS), **options)  # type: ignore[arg-type]


def test_a_follower_gets_wechat_first() -> None:
    assert ask() == ByWeChat(("o-self",))


def test_without_a_wechat_template_for_the_kind_it_goes_by_sms() -> None:
    assert ask(wechat_kinds=()) == BySms(urgent=False)
    assert ask(replace(PAYOUT, kind="recheck_due")) == BySms(urgent=False)


def test_without_followers_it_goes_by_sms() -> None:
    assert ask(recipient=PHONE_ONLY) == BySms(urgent=False)


def test_quiet_hours_hold_until_morning_without_spending_an_attempt() -> None:
    decision = ask(now=NIGHT)
    assert decision == Hold(MORNING, quiet_hours=True)
    assert isinstance(decision, Hold)
    assert decision.outcome() == Outcome(state=None, not_before=MORNING,
                                         counts_as_attempt=False, held_for_quiet_hours=True)


def test_a_verification_code_goes_by_sms_at_night_even_to_a_follower() -> None:
    asked_at_night = replace(CODE, expires_at=NIGHT + timedelta(minutes=5))
    assert ask(asked_at_night, now=NIGHT) == BySms(urgent=True)


def test_a_lapsed_code_is_skipped() -> None:
    assert ask(CODE, now=CODE.expires_at) == Skip("expired")  # type: ignore[arg-type]
    naive = replace(CODE, expires_at=DAYTIME.replace(tzinfo=None))  # as SQLite returns it
    assert ask(naive) == Skip("expired")


def test_a_code_without_a_phone_is_skipped() -> None:
    assert ask(CODE, replace(FOLLOWER, phone=None)) == Skip("no phone")


def test_nobody_to_send_to() -> None:
    assert ask(recipient=None) == Skip("no such beneficiary")
    assert ask(recipient=replace(PHONE_ONLY, phone=None)) == Skip("no phone")


def test_opt_outs_are_respected() -> None:
    # Opted out of WeChat for themselves (no follower left): no SMS instead.
    assert ask(recipient=replace(PHONE_ONLY, self_opted_out=True)) == Skip("opted out")
    assert ask(recipient=replace(PHONE_ONLY, sms_opted_out=True)) == Skip("opted out")


def test_a_phone_at_its_cap_waits_for_its_slot() -> None:
    slot = DAYTIME + timedelta(seconds=30)
    decision = ask(recipient=PHONE_ONLY, phone_wait=slot)
    assert decision == Hold(slot)
    assert isinstance(decision, Hold)
    assert decision.outcome().counts_as_attempt is False
    # Urgent messages are not capped: the worker reserves no slot for them.
    assert ask(CODE, recipient=PHONE_ONLY) == BySms(urgent=True)


def test_wechat_refused_falls_back_to_sms_or_fails_without_a_phone() -> None:
    assert ask(wechat_refused="unfollowed") == BySms(urgent=False)
    no_phone = ask(recipient=replace(FOLLOWER, phone=None), wechat_refused="unfollowed")
    assert no_phone == Skip("unfollowed", failed=True)
    assert isinstance(no_phone, Skip)
    assert no_phone.outcome() == Outcome(state="failed", error="unfollowed")
    # WeChat refused; the phone is opted out of SMS: nothing more to do.
    assert ask(recipient=replace(FOLLOWER, sms_opted_out=True),
               wechat_refused="wechat 43004") == Skip("opted out")


@pytest.mark.parametrize(("attempts", "state", "delay"), [
    (0, None, timedelta(seconds=30)), (1, None, timedelta(seconds=60)),
    (3, None, timedelta(seconds=240)), (5, "failed", None)])
def test_retry_backs_off_then_gives_up(attempts: int, state: str | None,
                                       delay: timedelta | None) -> None:
    outcome = retry_later(replace(PAYOUT, attempts=attempts), "tencent: HTTP 502", "sms",
                          DAYTIME, RetryPolicy())
    assert outcome.state == state
    if delay is None:
        assert outcome.error == "gave up: tencent: HTTP 502"
    else:
        assert outcome.not_before == DAYTIME + delay and outcome.counts_as_attempt
