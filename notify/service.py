"""Build the notifier's parts from settings and the stores the composition root
(:mod:`huimin.wiring.resources`) hands over: the notifier never chooses between Redis
and the database itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huimin.db import Database
from huimin.personal import Vault
from huimin.settings import Settings, require_secret
from notify.providers import build_sms_providers
from notify.rules import QuietHours
from notify.wechat import AccessTokenStore, WeChatApi
from notify.worker import PhoneLimiter, RateStore, Worker


def quiet_hours(settings: Settings) -> QuietHours:
    start, end = settings.quiet_hours
    return QuietHours(start=start, end=end)


def recheck_offsets(settings: Settings) -> list[int]:
    return list(settings.recheck_days)


@dataclass(frozen=True)
class NotifierStores:
    """What the notifier keeps beside its own tables, shared by every process: the
    database, the per-phone send limits, the per-provider rate and WeChat's access token
    (None without an AppID). Redis or the database, as the composition root chose."""

    db: Database
    limiter: PhoneLimiter
    rates: RateStore
    tokens: AccessTokenStore | None


def build_worker(settings: Settings, county: dict[str, Any], stores: NotifierStores,
                 **options: Any) -> Worker:
    """A worker with the configured SMS providers and, when configured, WeChat."""
    wechat = None
    if settings.wechat_secret and stores.tokens is not None:  # templates, late replies
        wechat = WeChatApi.from_settings(settings, stores.tokens)
    vault = Vault(require_secret(settings), settings.secret_key_previous)
    return Worker.assemble(stores.db, vault, county,
                           build_sms_providers(settings, county), stores.limiter,
                           wechat=wechat, wechat_templates=dict(settings.wechat_templates),
                           quiet=quiet_hours(settings), rate=settings.notify_rate,
                           rate_store=stores.rates, **options)
