"""What to do with one claimed message, decided without a database or a network.

:func:`decide` takes the message, who it is for and the time, and says: send it by
WeChat, send it by SMS, hold it until a given time, or skip it (or fail it). The
worker asks it once per message; when a WeChat send was refused for good it asks again
with that reason (``wechat_refused``), to learn whether an SMS should go instead.

The rules, in order: a lapsed message (a verification code past ``expires_at``) is
skipped; quiet hours hold non-urgent messages until morning (no attempt spent); a
verification code goes by SMS only; WeChat goes first when the person follows us, the
kind has a template and WeChat is configured; someone who opted out of WeChat for
themselves is not sent an SMS instead; without a phone, or opted out of SMS, it is
skipped (failed when WeChat had refused it); a phone at its cap waits for its next slot
(no attempt spent).

Also here: the values the decision works on (:class:`Claimed`, :class:`Recipient`),
what happened to a message (:class:`Outcome`), and the retry policy
(:class:`RetryPolicy`, :func:`retry_later`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from huimin.clock import as_utc
from notify.models import FAILED, SKIPPED
from notify.plan import VERIFICATION
from notify.rules import QuietHours


@dataclass(frozen=True)
class Claimed:
    """An outbox row this worker has claimed (state ``sending``)."""

    id: int
    key: str
    kind: str
    beneficiary_id: int
    urgent: bool
    params: Mapping[str, str]
    attempts: int
    expires_at: datetime | None = None


@dataclass
class Recipient:
    """Who a message is for, as far as sending goes (the phone in clear, in memory only)."""

    openids: list[str]
    self_opted_out: bool
    phone: str | None
    phone_hash: str | None
    sms_opted_out: bool


@dataclass(frozen=True)
class Outcome:
    """What happened to one message; ``state`` None means 'try again at not_before'."""

    state: str | None
    channel: str | None = None
    provider: str | None = None
    message_id: str | None = None
    error: str | None = None
    not_before: datetime | None = None
    counts_as_attempt: bool = True
    held_for_quiet_hours: bool = False


# ----- the decision ---------------------------------------------------------------------


@dataclass(frozen=True)
class ByWeChat:
    """Send a template message to each of these followers."""

    openids: tuple[str, ...]


@dataclass(frozen=True)
class BySms:
    """Send an SMS (``urgent``: a verification code, past the per-phone caps)."""

    urgent: bool


@dataclass(frozen=True)
class Hold:
    """Not now: back in the queue until ``until``, no attempt spent."""

    until: datetime
    quiet_hours: bool = False

    def outcome(self) -> Outcome:
        return Outcome(state=None, not_before=self.until, counts_as_attempt=False,
                       held_for_quiet_hours=self.quiet_hours)


@dataclass(frozen=True)
class Skip:
    """Not sent, for good: ``skipped`` (nothing to do), or ``failed`` when WeChat had
    refused it and there is no phone to fall back to."""

    reason: str
    failed: bool = False

    def outcome(self) -> Outcome:
        return Outcome(state=FAILED if self.failed else SKIPPED, error=self.reason)


Decision = ByWeChat | BySms | Hold | Skip


def decide(message: Claimed, recipient: Recipient | None, now: datetime, *,
           quiet: QuietHours, wechat_kinds: Collection[str] = (),
           phone_wait: datetime | None = None,
           wechat_refused: str | None = None) -> Decision:
    """The next step for ``message`` (see the module's description).

    ``wechat_kinds``: the kinds WeChat can carry (empty when WeChat is not configured).
    ``phone_wait``: when the phone may next get an SMS (None: now), as reserved for the
    whole batch. ``wechat_refused``: WeChat's reason when it refused the message for
    good (the second question)."""
    if message.expires_at is not None and as_utc(message.expires_at) <= now:
        return Skip("expired")
    if not message.urgent and quiet.is_quiet(now):
        return Hold(quiet.next_allowed(now), quiet_hours=True)
    if recipient is None:
        return Skip("no such beneficiary")
    if message.kind == VERIFICATION:  # asked for just now, and proves the phone: SMS
        return Skip("no phone") if recipient.phone is None else BySms(urgent=True)
    if wechat_refused is None:
        if recipient.openids and message.kind in wechat_kinds:
            return ByWeChat(tuple(recipient.openids))
        if recipient.self_opted_out:
            return Skip("opted out")
    if recipient.phone is None:
        return Skip(wechat_refused, failed=True) if wechat_refused else Skip("no phone")
    if recipient.sms_opted_out:
        return Skip("opted out")
    if phone_wait is not None:
        return Hold(phone_wait)
    return BySms(urgent=message.urgent)


# ----- retrying -------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)

    def delay(self, attempts: int) -> timedelta:
        return min(self.cap, self.base * (2 ** max(attempts - 1, 0)))


def retry_later(message: Claimed, error: str, channel: str, now: datetime,
                retry: RetryPolicy) -> Outcome:
    """Try again after the policy's delay, or give up when the attempts are spent."""
    attempts = message.attempts + 1
    if attempts >= retry.max_attempts:
        return Outcome(state=FAILED, channel=channel, error=f"gave up: {error}"[:200])
    return Outcome(state=None, channel=channel, error=error[:200],
                   not_before=now + retry.delay(attempts))
