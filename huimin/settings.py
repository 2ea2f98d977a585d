"""Settings read from ``HUIMIN_*`` environment variables, validated once at start.

Every bad value is reported with the name of the variable that holds it, so an
operator can fix a deployment without reading a stack trace.
"""

from __future__ import annotations

import functools
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import time
from pathlib import Path
from typing import Any, Union

PREFIX = "HUIMIN_"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///huimin.db"
DEFAULT_COUNTY_FILE = Path(__file__).resolve().parent.parent / "content" / "county.yaml"
_AES_KEY = re.compile(r"^[A-Za-z0-9+/]{43}$")
_DB_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
# The names an app offers for a list setting (notify.providers offers its SMS providers
# for HUIMIN_SMS_PROVIDER when imported), so that the core never names them itself.
_CHOICES: dict[str, tuple[str, ...]] = {}
LOG_FORMATS = ("text", "json")
MAX_TRUSTED_HOPS = 5

# The typed values that need their own reading (the field's type says which reader).
Names = tuple[str, ...]  # "a, b,a" -> ("a", "b"): in order, without repeats
Days = tuple[int, ...]  # "14,3" -> (14, 3)
Window = tuple[time, time]  # "21:00-08:00" -> (21:00, 08:00)
Pairs = Mapping[str, str]  # "a=1,b=2" -> {"a": "1", "b": "2"}


class SettingsError(ValueError):
    """A setting is missing or has a value we cannot use."""


def _rule(**rule: Any) -> dict[str, Any]:
    """A field's reading rule: ``low``/``high`` bounds, ``choices``, ``shape`` (what a
    well-formed value looks like, for the error message)."""
    return {"rule": rule}


@dataclass(frozen=True)
class Settings:
    """Runtime configuration, typed. Build it with :func:`load_settings`; every field is
    read from the variable named ``HUIMIN_`` + its name in capitals, by the reader its
    type names (see :func:`read_value`), once, at start."""

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
    # SMS providers in order of preference: console, tencent, aliyun.
    sms_provider: Names = ("console",)
    sms_console_file: Path | None = None
    sms_tencent_endpoint: str = "https://sms.tencentcloudapi.com"
    sms_tencent_region: str = "ap-guangzhou"
    sms_tencent_secret_id: str | None = None
    sms_tencent_secret_key: str | None = None
    sms_tencent_app_id: str | None = None
    # our template name -> the provider's template id ("verification_code=1234567,...")
    sms_tencent_templates: Pairs = field(default_factory=dict)
    sms_aliyun_endpoint: str = "https://dysmsapi.aliyuncs.com"
    sms_aliyun_access_key_id: str | None = None
    sms_aliyun_access_key_secret: str | None = None
    sms_aliyun_templates: Pairs = field(default_factory=dict)
    # Shared secret in the URLs given to providers for their callbacks.
    callback_token: str | None = None
    # WeChat template ids by reminder kind: "payout=<id>,recheck_due=<id>,...".
    wechat_templates: Pairs = field(default_factory=dict)
    # Asia/Shanghai; non-urgent reminders wait until the end.
    quiet_hours: Window = (time(21, 0), time(8, 0))
    # sends per second per provider, all workers together
    notify_rate: float = field(default=50.0, metadata=_rule(low=0.05))
    # reminders this many days before a recheck is due
    recheck_days: Days = field(default=(14, 3), metadata=_rule(
        high=999, shape="days before the recheck, like 14,3"))
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=_rule(low=1))
    # Seconds we allow ourselves before answering WeChat with "success" and
    # delivering the reply later; WeChat gives up after 5 seconds.
    reply_deadline: float = field(default=4.0, metadata=_rule(low=0.05))
    # Requests whose timestamp is further than this from our clock are replays.
    replay_window: int = field(default=300, metadata=_rule(low=1))
    max_body_bytes: int = field(default=64 * 1024, metadata=_rule(low=1))
    demo: bool = False
    log_level: str = "INFO"
    log_format: str = field(default="text", metadata=_rule(choices=LOG_FORMATS))
    # The staff UI: where uploaded lists wait for confirmation (default: a private
    # temporary folder), cookies only over https, and the proxies in front of it.
    admin_upload_dir: Path | None = None
    admin_secure_cookies: bool = False
    admin_trust_forwarded: bool = False
    admin_trusted_hops: int = field(default=1, metadata=_rule(
        low=1, high=MAX_TRUSTED_HOPS, shape=f"a whole number from 1 to {MAX_TRUSTED_HOPS} "
        "(the proxies in front of the admin UI)"))
    # The HUIMIN_* variables as given (to tell a value set on purpose from a default).
    extra: Mapping[str, str] = field(default_factory=dict)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some values replaced (used by tests and the demo). A string (or
        None) given for a field is read as its environment variable would be."""
        hints = _hints()
        typed = {name: (read_value(name, "" if value is None else value)
                        if name != "extra" and (value is None or isinstance(value, str))
                        and hints[name] is not str else value)
                 for name, value in changes.items()}
        return replace(self, **typed)

    def given(self, name: str) -> bool:
        """Whether ``HUIMIN_<NAME>`` was set (rather than left to its default)."""
        return PREFIX + name.upper() in self.extra


def variable(name: str) -> str:
    """The environment variable of field ``name``."""
    return PREFIX + name.upper()


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _parse_number(name: str, raw: str, kind: type, rule: Mapping[str, Any]) -> Any:
    text = raw.strip()
    whole = kind is int
    if whole and not (text.isascii() and text.lstrip("-").isdigit()):
        raise SettingsError(f"{name} must be {rule.get('shape', 'a number')}, "
                            f"not {raw!r}")
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value != value:  # NaN
        raise SettingsError(f"{name} must be a number, not {raw!r}")
    low, high = rule.get("low"), rule.get("high")
    if (low is not None and value < low) or (high is not None and value > high):
        if "shape" in rule:
            raise SettingsError(f"{name} must be {rule['shape']}, not {raw!r}")
        if high is None:
            raise SettingsError(f"{name} must be at least {low}, not {raw!r}")
        raise SettingsError(f"{name} must be from {low} to {high}, not {raw!r}")
    return value


def offer_choices(field_name: str, names: Iterable[str]) -> None:
    """Say which names setting ``field_name`` may list (called by the app that owns
    them, at import; the composition root imports it before reading settings)."""
    _CHOICES[field_name] = tuple(names)


def _parse_names(name: str, raw: str, choices: tuple[str, ...]) -> Names:
    names = tuple(dict.fromkeys(p.strip().lower() for p in raw.split(",") if p.strip()))
    if not names:
        raise SettingsError(f"{name} must name at least one, comma separated, not {raw!r}")
    if choices and (not names or set(names) - set(choices)):
        *first, last = choices
        raise SettingsError(f"{name} must list {', '.join(first)} and/or {last}, "
                            "comma separated")
    return names


def _parse_days(name: str, raw: str, rule: Mapping[str, Any]) -> Days:
    text = raw.replace(" ", "")
    if not re.fullmatch(r"\d{1,3}(,\d{1,3})*", text):
        raise SettingsError(f"{name} must be {rule['shape']}")
    return tuple(int(d) for d in text.split(","))


def _parse_window(name: str, raw: str) -> Window:
    try:
        start, end = raw.strip().split("-")
        if not all(re.fullmatch(r"\d{1,2}:\d{2}", t) for t in (start, end)):
            raise ValueError(raw)
        return time.fromisoformat(start.zfill(5)), time.fromisoformat(end.zfill(5))
    except ValueError:
        raise SettingsError(f"{name} must look like 21:00-08:00, not {raw!r}") from None


def _parse_map(name: str, raw: str) -> Pairs:
    try:
        return parse_pairs(raw)
    except ValueError:
        raise SettingsError(f"{name} must look like name=id,name=id") from None


def read_value(field_name: str, raw: str) -> Any:
    """The typed value of field ``field_name`` from its variable's text; an empty text
    means "not set" (the field's default). Raises :class:`SettingsError` naming the
    variable. The field's type chooses the reader, never its name."""
    spec = next(f for f in fields(Settings) if f.name == field_name)
    kind, name = _hints()[field_name], variable(field_name)
    rule = spec.metadata.get("rule", {})
    optional = typing.get_origin(kind) in (Union, types.UnionType) and \
        type(None) in typing.get_args(kind)
    if optional:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if kind is bool:
        return _parse_bool(name, raw)
    if not raw.strip():
        if optional:
            return None
        return spec.default_factory() if spec.default_factory is not MISSING \
            else spec.default
    if kind is str:
        value = raw.strip()
        if "choices" in rule:
            value = value.lower()
            if value not in rule["choices"]:
                raise SettingsError(f"{name} must be {' or '.join(rule['choices'])}, "
                                    f"not {raw!r}")
        return value
    if kind in (int, float):
        return _parse_number(name, raw, kind, rule)
    if kind is Path:
        return Path(raw.strip())
    if kind == Names:
        return _parse_names(name, raw, _CHOICES.get(field_name, ()))
    if kind == Days:
        return _parse_days(name, raw, rule)
    if kind == Window:
        return _parse_window(name, raw)
    if kind == Pairs:
        return _parse_map(name, raw)
    raise TypeError(f"no reader for {name} ({kind!r})")  # a field added without one


def load_settings(
    environ: Mapping[str, str] | None = None, defaults: Mapping[str, Any] | None = None
) -> Settings:
    """Read and check every ``HUIMIN_*`` setting from ``environ`` (default: the process
    environment), once: each value is parsed into its type here and nowhere else.

    ``defaults`` supplies values used when a variable is not set (the demo uses
    this, as typed values or as text); the environment always wins.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, value in (defaults or {}).items():
        values[name] = read_value(name, value) if isinstance(value, str) else value
    for f in fields(Settings):
        if f.name != "extra" and variable(f.name) in env:
            values[f.name] = read_value(f.name, env[variable(f.name)])
    extra = {k: v for k, v in env.items() if k.startswith(PREFIX)}
    settings = Settings(**values, extra=extra)
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
    urls = [(f.name, getattr(settings, f.name)) for f in fields(Settings)
            if f.name == "wechat_api_base" or f.name.endswith("_endpoint")]
    for name, url in urls:
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"{variable(name)} must be an http:// or https:// URL")
    if not settings.county_file or not settings.county_file.is_file():
        raise SettingsError(f"HUIMIN_COUNTY_FILE: no such file {str(settings.county_file)!r}")


def admin_forwarded_hops(settings: Settings) -> int | None:
    """How many proxies of our own stand in front of the admin UI, each appending the
    address it saw to X-Forwarded-For (``HUIMIN_ADMIN_TRUSTED_HOPS``, default 1), or None
    when the header is not trusted (``HUIMIN_ADMIN_TRUST_FORWARDED`` off)."""
    return settings.admin_trusted_hops if settings.admin_trust_forwarded else None


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
    return list(settings.sms_provider)


def require_sms_choice(settings: Settings) -> None:
    """Outside the demo, the console provider (which sends nothing) only when chosen on
    purpose: a server that sends codes and reminders must not fall back to it silently."""
    chosen = settings.given("sms_provider")
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
