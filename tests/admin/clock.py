"""A clock tests move by hand, and the admin app mounted on it.

It starts at the real time and only moves when told, so no test names a calendar date
and every time the app stamps or compares (sessions, sign-in locks) is relative to it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp import web

from admin.accounts import LOGIN_POLICY, LoginPolicy
from huimin.clock import utcnow
from huimin.settings import Settings
from huimin.wiring.apps import create_admin_app


class StepClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def mounted_on(settings: Settings, clock: StepClock,
               login_policy: LoginPolicy = LOGIN_POLICY) -> web.Application:
    root = web.Application()
    root.add_subapp("/admin", create_admin_app(settings, clock=clock,
                                               login_policy=login_policy))
    return root


def behind_proxy(settings: Settings, hops: int = 1) -> Settings:
    """Settings for an admin UI behind ``hops`` proxies of ours (X-Forwarded-For)."""
    return settings.with_overrides(admin_trust_forwarded=True, admin_trusted_hops=hops)
