"""Build the notifier's parts from settings (used by the CLI and the demo process)."""

from __future__ import annotations

from typing import Any

from huimin.db import Database
from huimin.personal import Vault
from huimin.settings import Settings, require_secret
from notify.providers import build_sms_providers
from notify.rules import (
    DatabasePhoneLimiter,
    DatabaseRateStore,
    QuietHours,
    RedisPhoneLimiter,
    RedisRateStore,
)
from notify.wechat import WeChatApi, token_store
from notify.worker import PhoneLimiter, RateStore, Worker


def quiet_hours(settings: Settings) -> QuietHours:
    start, end = settings.quiet_hours
    return QuietHours(start=start, end=end)


def recheck_offsets(settings: Settings) -> list[int]:
    return list(settings.recheck_days)


def build_worker(settings: Settings, db: Database, county: dict[str, Any],
                 redis: Any = None, **options: Any) -> Worker:
    """A worker with the configured SMS providers and, when configured, WeChat."""
    wechat = None
    templates = dict(settings.wechat_templates)
    if settings.wechat_secret and settings.wechat_appid:  # templates, late replies
        wechat = WeChatApi.from_settings(settings, token_store(settings, redis=redis,
                                                               database=db))
    limiter: PhoneLimiter
    rates: RateStore
    if redis is not None:
        limiter, rates = RedisPhoneLimiter(redis), RedisRateStore(redis)
    else:
        limiter, rates = DatabasePhoneLimiter(db), DatabaseRateStore(db)
    vault = Vault(require_secret(settings), settings.secret_key_previous)
    return Worker.assemble(db, vault, county,
                           build_sms_providers(settings, county), limiter, wechat=wechat,
                           wechat_templates=templates, quiet=quiet_hours(settings),
                           rate=settings.notify_rate, rate_store=rates, **options)
