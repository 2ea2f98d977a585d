"""The web applications as they are served, put together by the composition root: each
gets the database, Redis and the stores on them from one :class:`Backing`, opened when
the application is made and closed after it (and after its sub-applications) has
cleaned up. In the demo the staff UI is mounted beside the bot and shares its backing,
so one process has one database engine; the bot never imports the admin package."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from admin.accounts import LOGIN_POLICY, LoginPolicy
from admin.app import create_admin_app as create_staff_app
from bot.app import create_app as create_bot_app
from bot.writes import WRITE_DELAY
from huimin.clock import utcnow
from huimin.settings import Settings
from huimin.wiring.resources import Backing


def _closes(app: web.Application, backing: Backing) -> None:
    """Close ``backing`` last: on_cleanup handlers run after the app's cleanup
    contexts and those of the sub-applications added before this call."""

    async def close(_app: web.Application) -> None:
        await backing.close()

    app.on_cleanup.append(close)


def create_app(settings: Settings, clock: Callable[[], datetime] = utcnow,
               write_delay: float = WRITE_DELAY) -> web.Application:
    """The bot's application (see :func:`bot.app.create_app`) on a backing of its own;
    in the demo, the staff UI at /admin on the same backing."""
    backing = Backing.open(settings)
    app = create_bot_app(settings, backing, clock=clock, write_delay=write_delay)
    if settings.demo:
        app.add_subapp("/admin", create_staff_app(settings, backing))
    _closes(app, backing)
    return app


def create_admin_app(settings: Settings, clock: Callable[[], datetime] = utcnow,
                     login_policy: LoginPolicy = LOGIN_POLICY) -> web.Application:
    """The staff UI (see :func:`admin.app.create_admin_app`) on a backing of its own, to
    mount at /admin (``huimin admin serve``, or beside a bot in tests)."""
    backing = Backing.open(settings)
    app = create_staff_app(settings, backing, clock=clock, login_policy=login_policy)
    _closes(app, backing)
    return app
