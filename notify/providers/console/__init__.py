"""The console provider: sends nothing (demo and development). ``send`` holds it,
``settings`` builds it; it has no lookup (a crash cannot be reconciled with it: the
worker queues such a message again) and receives no pushes."""

from __future__ import annotations

from notify.providers.console.send import ConsoleSms
from notify.providers.console.settings import build
from notify.providers.plugin import ProviderPlugin

PLUGIN = ProviderPlugin(name="console", build=build)

__all__ = ["PLUGIN", "ConsoleSms"]
