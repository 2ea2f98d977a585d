"""Sending a batch's SMS: grouping, pacing and failover between providers.

Messages with the same template and parameters go in one provider call (Tencent takes
200 numbers a call), the calls concurrently, at most ``concurrency`` in flight (shared
with the WeChat calls), each at its turn in the rate booked for the batch
(:meth:`SmsDispatcher.book`). Providers are tried in order of preference; what one
cannot take for now goes to the next; what none took is retried later.

What to do about a failed call is decided by the :class:`~notify.sms.FailureKind` the
provider gives it, never by its text: "too fast" is paced and asked again (up to
:data:`THROTTLE_TRIES` times), then the group waits :data:`THROTTLED_PAUSE` without
spending an attempt; a spent daily limit or account trouble sets the provider aside
(:mod:`notify.health`); repeated unreachable calls set it aside for a while. Messages
that no provider can take meanwhile wait for the first to come back without spending
an attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from huimin.db import Database
from notify.decide import Claimed, Outcome, RetryPolicy, retry_later
from notify.health import ProviderHealth, SetAside, read_asides, save_aside
from notify.models import FAILED, SENT
from notify.rules import RateLimiter, wait_until
from notify.sms import (
    ACCOUNT_KINDS,
    FailureKind,
    ProviderUnavailable,
    SmsMessage,
    SmsProvider,
    SmsResult,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

THROTTLE_TRIES = 3  # calls of one group while the provider says "too fast"
THROTTLED_PAUSE = timedelta(seconds=5)  # then the group waits this long, no attempt counted
HEALTH_REFRESH = 5.0  # seconds between reads of the providers set aside by other workers


@dataclass(frozen=True)
class Booking:
    """The batch's share of the preferred provider's rate, starting at ``start``
    (``time.monotonic`` seconds, as the rate limiter counts)."""

    provider: str
    start: float


class SmsDispatcher:
    """Sends SMS through ``providers`` (preferred first) for one worker."""

    def __init__(self, providers: Sequence[SmsProvider], db: Database, *,
                 rates: dict[str, RateLimiter], calls: asyncio.Semaphore,
                 health: ProviderHealth, retry: RetryPolicy,
                 clock: Callable[[], datetime]) -> None:
        self.providers = list(providers)
        self.db = db
        self.rates = rates
        self.calls = calls
        self.health = health
        self.retry = retry
        self.clock = clock
        self._health_read = -HEALTH_REFRESH  # monotonic time the set-asides were last read

    async def refresh_health(self) -> None:
        """Take up the set-asides other workers recorded (every few seconds at most)."""
        if time.monotonic() - self._health_read < HEALTH_REFRESH:
            return
        self._health_read = time.monotonic()
        found = await read_asides(self.db, [p.name for p in self.providers])
        for name, entry in found.items():
            self.health.take_up(name, entry)

    async def book(self, count: int) -> Booking | None:
        """Book the preferred usable provider's rate for ``count`` numbers (one round
        trip to the shared schedule), or None when every provider is set aside."""
        preferred = next((p for p in self.providers if self.health.usable(p.name)), None)
        if preferred is None:
            return None
        return Booking(preferred.name, await self.rates[preferred.name].reserve(count))

    async def send(self, pending: Sequence[tuple[Claimed, SmsMessage]],
                   booked: Booking | None) -> dict[int, Outcome]:
        """Send a batch's SMS: messages with the same template and parameters go in one
        provider call, the calls concurrently; each call waits for its own turn within
        the booked share."""
        by_text: dict[tuple[str, tuple[tuple[str, str], ...]],
                      list[tuple[Claimed, SmsMessage]]] = {}
        for message, sms in pending:
            by_text.setdefault((sms.template, tuple(sorted(sms.params.items()))),
                               []).append((message, sms))
        # No call may carry more numbers than a provider takes in its burst (a second's
        # worth): a bigger one would be refused as too fast however long we waited.
        most = max(1, int(min(r.rate * r.burst for r in self.rates.values())))
        groups = [group[i:i + most] for group in by_text.values()
                  for i in range(0, len(group), most)]
        turns: list[float | None] = []
        offset = 0
        for group in groups:
            offset += len(group)
            if booked is None:
                turns.append(None)
            else:
                limiter = self.rates[booked.provider]
                turns.append(booked.start + offset / limiter.rate - limiter.burst)
        prepaid = booked.provider if booked else None
        outcomes: dict[int, Outcome] = {}
        for part in await asyncio.gather(*(self._send_group(g, prepaid, turn)
                                           for g, turn in zip(groups, turns, strict=True))):
            outcomes.update(part)
        return outcomes

    async def _send_group(self, group: Sequence[tuple[Claimed, SmsMessage]],
                          prepaid: str | None = None,
                          turn: float | None = None) -> dict[int, Outcome]:
        """Providers in order of preference; what one cannot take for now goes to the
        next; what none took is retried later: soon when the providers only asked us to
        slow down, with backoff otherwise."""
        outcomes: dict[int, Outcome] = {}
        remaining = list(group)
        errors: dict[int, str] = {}
        # Messages that failed for a reason of their own or a provider's passing trouble
        # (the others only met providers whose account cannot send just now).
        tried: set[int] = set()
        throttled = False
        for provider in self.providers:
            if not remaining:
                break
            if not self.health.usable(provider.name):
                continue
            paid = provider.name == prepaid
            try:
                results = await self._send_paced(provider, [sms for _, sms in remaining],
                                                 turn=turn if paid else None)
            except ProviderUnavailable as exc:
                throttled = exc.kind is FailureKind.THROTTLED
                if exc.kind in ACCOUNT_KINDS:
                    await self._set_aside(provider.name, exc.kind, exc.reason)
                else:
                    tried.update(m.id for m, _ in remaining)
                    if not throttled:  # too fast is our fault, not the provider's health
                        entry = self.health.failed(provider.name, exc.reason)
                        if entry is not None:
                            await self._save_aside(provider.name, entry)
                errors.update({m.id: f"{provider.name}: {exc.reason}" for m, _ in remaining})
                continue
            throttled = False
            self.health.worked(provider.name)
            spent = next((r for r in results if not r.accepted and r.kind in ACCOUNT_KINDS),
                         None)
            if spent is not None:  # the limit ran out part way through the call
                assert spent.kind is not None
                await self._set_aside(provider.name, spent.kind, spent.error or spent.kind)
            still = []
            for (message, sms), result in zip(remaining, results, strict=True):
                if result.accepted:
                    outcomes[message.id] = Outcome(state=SENT, channel="sms",
                                                   provider=provider.name,
                                                   message_id=result.message_id)
                elif result.permanent:
                    outcomes[message.id] = Outcome(state=FAILED, channel="sms",
                                                   provider=provider.name,
                                                   error=result.error or "rejected")
                else:
                    errors[message.id] = f"{provider.name}: {result.error}"
                    if result.kind not in ACCOUNT_KINDS:
                        tried.add(message.id)
                    still.append((message, sms))
            remaining = still
        back = self.health.back_at([p.name for p in self.providers])
        for message, _ in remaining:
            error = errors.get(message.id, "no SMS provider available")
            if throttled:
                outcomes[message.id] = Outcome(
                    state=None, channel="sms", error=error[:200], counts_as_attempt=False,
                    not_before=self.clock() + THROTTLED_PAUSE)
            elif message.id not in tried and back is not None and back > self.clock():
                # Every provider is set aside: wait for the first to come back. Not the
                # message's fault, so no attempt is spent (a daily limit can last hours).
                outcomes[message.id] = Outcome(
                    state=None, channel="sms", error=error[:200], counts_as_attempt=False,
                    not_before=back)
            else:
                outcomes[message.id] = retry_later(message, error, "sms", self.clock(),
                                                   self.retry)
        return outcomes

    async def _set_aside(self, name: str, kind: FailureKind, reason: str) -> None:
        await self._save_aside(name, self.health.set_aside(name, kind, reason))

    async def _save_aside(self, name: str, entry: SetAside) -> None:
        await save_aside(self.db, name, entry, self.clock())

    async def _send_paced(self, provider: SmsProvider, messages: Sequence[SmsMessage],
                          turn: float | None = None) -> list[SmsResult]:
        """One call within the provider's rate: at ``turn`` when the batch booked it,
        else booked now (each number counts). When the provider says we are too fast
        (throttled) it is asked again, after a growing pause, up to three times."""
        async def attempt(number: int) -> list[SmsResult]:
            if turn is not None and number == 1:
                await wait_until(turn)
            else:
                await self.rates[provider.name].take(len(messages))
            async with self.calls:
                return await provider.send(messages)

        return await until_not_throttled(attempt, lambda number: 0.25 * 2 ** (number - 1))


async def until_not_throttled(attempt: Callable[[int], Awaitable[T]],
                              pause: Callable[[int], float]) -> T:
    """Make ``attempt`` (numbered from 1) until the provider stops saying "too fast":
    at most THROTTLE_TRIES times, waiting its Retry-After or ``pause(number)`` between.
    Any other failure, or the last one, is raised."""
    for number in range(1, THROTTLE_TRIES + 1):
        try:
            return await attempt(number)
        except ProviderUnavailable as exc:
            if number == THROTTLE_TRIES or exc.kind is not FailureKind.THROTTLED:
                raise
            await asyncio.sleep(exc.retry_after or pause(number))
    raise AssertionError("unreachable")
