"""Settings read from ``HUIMIN_*`` environment variables, validated once at start.

Every bad value is reported with the name of the variable that holds it, so an
operator can fix a deployment without reading a stack trace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PREFIX = "HUIMIN_"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///huimin.db"
DEFAULT_COUNTY_FILE = Path(__file__).resolve().parent.parent / "content" / "county.yaml"
_AES_KEY = re.compile(r"^[A-Za-z0-9+/]{43}$")
_DB_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")


class SettingsError(ValueError):
    """A setting is missing or has a value we cannot use."""


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Build it with :func:`load_settings`."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    wechat_token: str | None = None
    wechat_appid: str | None = None
    wechat_aes_key: str | None = None
    county_file: Path = DEFAULT_COUNTY_FILE
    # Derives the keys that encrypt and hash ID and phone numbers. Never commit it.
    secret_key: str | None = None
    # The secret being replaced, accepted until ``huimin keys rotate`` has finished.
    secret_key_previous: str | None = None
    wechat_secret: str | None = None  # AppSecret, for WeChat's server API
    wechat_api_base: str = "https://api.weixin.qq.com"
    # SMS providers in order of preference, comma separated: console, tencent, aliyun.
    sms_provider: str = "console"
    sms_console_file: Path | None = None
    sms_tencent_endpoint: str = "https://sms.tencentcloudapi.com"
    sms_tencent_region: str = "ap-guangzhou"
    sms_tencent_secret_id: str | None = None
    sms_tencent_secret_key: str | None = None
    sms_tencent_app_id: str | None = None
    sms_tencent_templates: str | None = None  # "verification_code=1234567,payout=..."
    sms_aliyun_endpoint: str = "https://dysmsapi.aliyuncs.com"
    sms_aliyun_access_key_id: str | None = None
    sms_aliyun_access_key_secret: str | None = None
    sms_aliyun_templates: str | None = None  # "verification_code=SMS_123,payout=..."
    # Shared secret in the URLs given to providers for their callbacks.
    callback_token: str | None = None
    # WeChat template ids by reminder kind: "payout=<id>,recheck_due=<id>,...".
    wechat_templates: str | None = None
    quiet_hours: str = "21:00-08:00"  # Asia/Shanghai; non-urgent reminders wait
    notify_rate: float = 50.0  # sends per second per provider, all workers together
    recheck_days: str = "14,3"  # reminders this many days before a recheck is due
    host: str = "127.0.0.1"
    port: int = 8080
    # Seconds we allow ourselves before answering WeChat with "success" and
    # delivering the reply later; WeChat gives up after 5 seconds.
    reply_deadline: float = 4.0
    # Requests whose timestamp is further than this from our clock are replays.
    replay_window: int = 300
    max_body_bytes: int = 64 * 1024
    demo: bool = False
    log_level: str = "INFO"
    extra: Mapping[str, str] = field(default_factory=dict)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some values replaced (used by tests and the demo)."""
        return replace(self, **changes)


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _parse_number(name: str, raw: str, kind: type, minimum: float) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, not {raw!r}")
    return value


def load_settings(
    environ: Mapping[str, str] | None = None, defaults: Mapping[str, Any] | None = None
) -> Settings:
    """Read settings from ``environ`` (default: the process environment).

    ``defaults`` supplies values used when a variable is not set (the demo uses
    this); the environment always wins.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = dict(defaults or {})
    known = {f.name for f in fields(Settings)} - {"extra"}
    for f in fields(Settings):
        if f.name == "extra":
            continue
        name = PREFIX + f.name.upper()
        if name not in env:
            continue
        raw = env[name]
        if f.name in {"port", "replay_window", "max_body_bytes"}:
            values[f.name] = _parse_number(name, raw, int, 1)
        elif f.name in {"reply_deadline", "notify_rate"}:
            values[f.name] = _parse_number(name, raw, float, 0.05)
        elif f.name == "demo":
            values[f.name] = _parse_bool(name, raw)
        elif f.name in {"county_file", "sms_console_file"}:
            values[f.name] = Path(raw) if raw.strip() else None
        else:
            values[f.name] = raw.strip() or None
    extra = {k: v for k, v in env.items() if k.startswith(PREFIX)}
    settings = Settings(**{k: v for k, v in values.items() if k in known}, extra=extra)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Raise :class:`SettingsError` naming the first unusable variable."""
    if not settings.database_url.startswith(_DB_SCHEMES):
        raise SettingsError(
            "HUIMIN_DATABASE_URL must start with sqlite+aiosqlite:// or "
            f"postgresql+asyncpg://, not {settings.database_url.split('://')[0]!r}://"
        )
    if settings.redis_url and not settings.redis_url.startswith(("redis://", "rediss://")):
        raise SettingsError("HUIMIN_REDIS_URL must start with redis:// or rediss://")
    if settings.wechat_aes_key is not None and not _AES_KEY.match(settings.wechat_aes_key):
        raise SettingsError(
            "HUIMIN_WECHAT_AES_KEY must be the 43-character EncodingAESKey from the "
            "WeChat admin console (letters, digits, + and /)"
        )
    if settings.wechat_aes_key and not settings.wechat_appid:
        raise SettingsError("HUIMIN_WECHAT_APPID is needed when HUIMIN_WECHAT_AES_KEY is set")
    if settings.wechat_token is not None and not re.fullmatch(r"[A-Za-z0-9]{3,32}",
                                                              settings.wechat_token):
        raise SettingsError("HUIMIN_WECHAT_TOKEN must be 3 to 32 letters or digits")
    if settings.secret_key is not None and len(settings.secret_key) < 16:
        raise SettingsError("HUIMIN_SECRET_KEY must be at least 16 characters")
    if settings.secret_key_previous is not None:
        if len(settings.secret_key_previous) < 16:
            raise SettingsError("HUIMIN_SECRET_KEY_PREVIOUS must be at least 16 characters")
        if not settings.secret_key:
            raise SettingsError("HUIMIN_SECRET_KEY_PREVIOUS is set but HUIMIN_SECRET_KEY is "
                                "not: set the new key in HUIMIN_SECRET_KEY")
        if settings.secret_key_previous == settings.secret_key:
            raise SettingsError("HUIMIN_SECRET_KEY_PREVIOUS must differ from "
                                "HUIMIN_SECRET_KEY (the previous key is the one being "
                                "replaced)")
    from notify.providers import PROVIDERS, unknown_provider_error  # names only, light

    providers = sms_providers(settings)
    if not providers or set(providers) - set(PROVIDERS):
        raise SettingsError(unknown_provider_error())
    urls = [(f.name, getattr(settings, f.name)) for f in fields(Settings)
            if f.name == "wechat_api_base" or f.name.endswith("_endpoint")]
    for name, url in urls:
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"{PREFIX}{name.upper()} must be an http:// or https:// URL")
    if not re.fullmatch(r"\d{1,2}:\d{2}-\d{1,2}:\d{2}", settings.quiet_hours):
        raise SettingsError("HUIMIN_QUIET_HOURS must look like 21:00-08:00")
    if not re.fullmatch(r"\d{1,3}(,\d{1,3})*", settings.recheck_days.replace(" ", "")):
        raise SettingsError("HUIMIN_RECHECK_DAYS must be days before the recheck, like 14,3")
    for f in fields(Settings):  # the SMS providers' template maps, then WeChat's
        value = getattr(settings, f.name) if f.name.endswith("_templates") else None
        if value:
            try:
                parse_pairs(value)
            except ValueError:
                raise SettingsError(f"{PREFIX}{f.name.upper()} must look like "
                                    "name=id,name=id") from None
    if not settings.county_file or not settings.county_file.is_file():
        raise SettingsError(f"HUIMIN_COUNTY_FILE: no such file {str(settings.county_file)!r}")
    admin_forwarded_hops(settings)


MAX_TRUSTED_HOPS = 5


def admin_forwarded_hops(settings: Settings) -> int | None:
    """How many proxies of our own stand in front of the admin UI, each appending the
    address it saw to X-Forwarded-For (``HUIMIN_ADMIN_TRUSTED_HOPS``, default 1), or None
    when the header is not trusted (``HUIMIN_ADMIN_TRUST_FORWARDED`` off)."""
    trust = _parse_bool("HUIMIN_ADMIN_TRUST_FORWARDED",
                        settings.extra.get("HUIMIN_ADMIN_TRUST_FORWARDED", ""))
    raw = settings.extra.get("HUIMIN_ADMIN_TRUSTED_HOPS", "").strip()
    hops = 1
    if raw:
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_TRUSTED_HOPS:
            raise SettingsError(f"HUIMIN_ADMIN_TRUSTED_HOPS must be a whole number from 1 to "
                                f"{MAX_TRUSTED_HOPS} (the proxies in front of the admin UI), "
                                f"not {raw!r}")
        hops = int(raw)
    return hops if trust else None


def parse_pairs(value: str) -> dict[str, str]:
    """'a=1,b=2' -> {'a': '1', 'b': '2'}; raises ValueError when malformed."""
    pairs = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise ValueError(item)
        pairs[key.strip()] = val.strip()
    return pairs


def require_secret(settings: Settings) -> str:
    """ID and phone numbers cannot be stored or looked up without the secret key."""
    if not settings.secret_key:
        raise SettingsError("HUIMIN_SECRET_KEY is required to store or look up ID and phone "
                            "numbers (at least 16 random characters, kept out of the repo)")
    return settings.secret_key


def sms_providers(settings: Settings) -> list[str]:
    """The provider names of ``HUIMIN_SMS_PROVIDER``, in order, without repeats."""
    return list(dict.fromkeys(p.strip() for p in settings.sms_provider.split(",")
                              if p.strip()))


def require_sms_choice(settings: Settings) -> None:
    """Outside the demo, the console provider (which sends nothing) only when chosen on
    purpose: a server that sends codes and reminders must not fall back to it silently."""
    chosen = PREFIX + "SMS_PROVIDER" in settings.extra
    if settings.demo or chosen or not settings.secret_key:
        return  # (without the secret key nothing sends SMS)
    if "console" in sms_providers(settings):
        raise SettingsError(
            "HUIMIN_SMS_PROVIDER is not set, and its default, console, sends no SMS "
            "(verification codes and reminders would never arrive): set it to tencent "
            "and/or aliyun, or to console on purpose for a test installation")


def require_wechat(settings: Settings) -> None:
    """The webhook cannot verify anything without the token."""
    if not settings.wechat_token:
        raise SettingsError("HUIMIN_WECHAT_TOKEN is required to serve the WeChat webhook")
