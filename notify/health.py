"""Which SMS providers may be called now, kept for every worker and the staff UI.

A provider is set aside after ``threshold`` unreachable calls in a row, for
``cooldown``; at once when it says its account cannot send: until the next midnight
China time for a spent daily limit (the limit resets then), for ``account_pause`` for
other account trouble (someone has to top up or fix a permission; it is tried again
after that). "Too fast" never sets it aside. Set-asides are written to
``sms_provider_status`` (:func:`save_aside`), where the other workers take them up
(:func:`read_asides`) and the reminders page shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from huimin.clock import CHINA, china_midnight, local_today, utcnow
from huimin.db import Database, upsert
from notify.models import ProviderStatus
from notify.sms import FailureKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SetAside:
    """A provider not to be called before ``until``, and why."""

    kind: FailureKind
    reason: str
    until: datetime


@dataclass
class ProviderHealth:
    """Which SMS providers may be called now (see the module's description). Times come
    from ``clock`` (the worker's)."""

    threshold: int = 3
    cooldown: timedelta = timedelta(seconds=60)
    account_pause: timedelta = timedelta(hours=1)
    clock: Callable[[], datetime] = utcnow
    failures: dict[str, int] = field(default_factory=dict)
    aside: dict[str, SetAside] = field(default_factory=dict)

    def usable(self, name: str) -> bool:
        entry = self.aside.get(name)
        return entry is None or entry.until <= self.clock()

    def failed(self, name: str, reason: str = "") -> SetAside | None:
        """One more unreachable call; the set-aside when that makes ``threshold``."""
        self.failures[name] = self.failures.get(name, 0) + 1
        if self.failures[name] < self.threshold:
            return None
        self.failures[name] = 0
        return self.set_aside(name, FailureKind.UNREACHABLE,
                              f"{self.threshold} calls in a row failed: {reason}")

    def set_aside(self, name: str, kind: FailureKind, reason: str) -> SetAside:
        now = self.clock()
        if kind is FailureKind.DAILY_QUOTA:
            until = next_china_midnight(now)
        elif kind is FailureKind.ACCOUNT:
            until = now + self.account_pause
        else:
            until = now + self.cooldown
        entry = SetAside(kind, reason[:200], until)
        self.aside[name] = entry
        self.failures[name] = 0
        shown = until.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")
        if kind is FailureKind.DAILY_QUOTA:
            log.warning("SMS provider %s set aside until %s China time: its daily sending "
                        "limit is spent (%s)", name, shown, reason)
        elif kind is FailureKind.ACCOUNT:
            log.error("SMS provider %s set aside until %s China time: its account cannot "
                      "send (%s). Fix it in the provider's console (balance, package, "
                      "permissions, keys); it is tried again then", name, shown, reason)
        else:
            log.warning("SMS provider %s set aside until %s China time: %s", name, shown,
                        reason)
        return entry

    def worked(self, name: str) -> None:
        self.failures[name] = 0

    def back_at(self, names: Sequence[str]) -> datetime | None:
        """When the first of ``names`` may be called again (now if one may), or None
        when there are none."""
        now = self.clock()
        times = [now if self.usable(n) else self.aside[n].until for n in names]
        return min(times) if times else None

    def take_up(self, name: str, entry: SetAside) -> None:
        """A set-aside another worker recorded, unless ours lasts longer."""
        mine = self.aside.get(name)
        if mine is None or mine.until < entry.until:
            self.aside[name] = entry


def next_china_midnight(now: datetime) -> datetime:
    """The next 00:00 in China (when providers' daily limits reset), in UTC."""
    return china_midnight(local_today(now) + timedelta(days=1))


async def save_aside(db: Database, name: str, entry: SetAside, now: datetime) -> None:
    """Keep a set-aside where every worker and the staff UI see it."""
    async with db.session() as session:
        await upsert(session, ProviderStatus, {
            "provider": name, "kind": str(entry.kind), "reason": entry.reason,
            "set_aside_at": now, "aside_until": entry.until}, key="provider")


async def read_asides(db: Database, names: Sequence[str]) -> dict[str, SetAside]:
    """The set-asides recorded for ``names`` (ended ones too: ``usable`` tells)."""
    async with db.session() as session:
        rows = (await session.execute(
            select(ProviderStatus.provider, ProviderStatus.kind, ProviderStatus.reason,
                   ProviderStatus.aside_until)
            .where(ProviderStatus.provider.in_(names)))).all()
    found = {}
    for name, kind, reason, until in rows:
        try:
            failure = FailureKind(kind)
        except ValueError:
            failure = FailureKind.UNREACHABLE
        found[name] = SetAside(failure, reason, until)
    return found
