"""The console provider's settings: ``HUIMIN_SMS_CONSOLE_FILE`` (and the demo switch)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from huimin.settings import Settings
from notify.providers.console.send import ConsoleSms

log = logging.getLogger("notify.providers")


def build(settings: Settings, county: Mapping[str, Any]) -> ConsoleSms:
    """The console provider; outside the demo, said loudly at start (it sends nothing)."""
    if not settings.demo:
        log.warning("HUIMIN_SMS_PROVIDER includes console: no SMS is really sent "
                    "(verification codes and reminders reach nobody)")
    return ConsoleSms(settings.sms_console_file, show=settings.demo)
