"""The SMS providers: one folder each, and this registry of them.

A provider's folder (``notify/providers/<name>/``) holds everything about it: sending,
the lookup that reconciles a crash, its delivery receipts and replies, its settings and
error codes, and a ``PLUGIN`` (:class:`~notify.providers.plugin.ProviderPlugin`).
:data:`PROVIDERS` below names the folders; nothing else in the notifier names a
provider. :func:`build_sms_providers` turns ``HUIMIN_SMS_PROVIDER`` (comma separated, in
order of preference) into provider objects and refuses to start when a named provider
lacks what it needs.

This module stays light (no provider is imported until it is asked for): the composition
root imports it before reading the settings, so that ``HUIMIN_SMS_PROVIDER`` is checked
against :data:`PROVIDERS` at start.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from huimin.settings import offer_choices

if TYPE_CHECKING:
    from huimin.settings import Settings
    from notify.providers.plugin import CallbackFormat, ProviderPlugin
    from notify.sms import SmsProvider

# name -> the package whose PLUGIN describes it. Adding a provider: its folder, one line.
PROVIDERS: dict[str, str] = {
    "console": "notify.providers.console",
    "tencent": "notify.providers.tencent",
    "aliyun": "notify.providers.aliyun",
}
# HUIMIN_SMS_PROVIDER may list these (checked when the settings are read).
offer_choices("sms_provider", PROVIDERS)


def unknown_provider_error() -> str:
    """What to tell an operator whose ``HUIMIN_SMS_PROVIDER`` names no known provider."""
    *first, last = PROVIDERS
    return (f"HUIMIN_SMS_PROVIDER must list {', '.join(first)} and/or {last}, "
            "comma separated")


def registered(name: str) -> ProviderPlugin:
    """The registered provider ``name`` (KeyError when there is none)."""
    found: ProviderPlugin = importlib.import_module(PROVIDERS[name]).PLUGIN
    return found


def callback_format(name: str) -> CallbackFormat | None:
    """How provider ``name``'s pushes read, or None (unknown, or it pushes nothing)."""
    return registered(name).callbacks if name in PROVIDERS else None


def build_sms_providers(settings: Settings, county: Mapping[str, Any]) -> list[SmsProvider]:
    """The providers named by ``HUIMIN_SMS_PROVIDER``, in that order (preferred first).

    Raises :class:`~huimin.settings.SettingsError` naming the missing variable when a
    provider's credentials or template map are not set.
    """
    from huimin.settings import SettingsError, sms_providers

    providers = []
    for name in sms_providers(settings):
        if name not in PROVIDERS:
            raise SettingsError(unknown_provider_error())
        providers.append(registered(name).build(settings, county))
    return providers
