"""What each provider's folder offers the rest of the notifier: one
:class:`ProviderPlugin` (its name, how to build it from the settings, how to read its
delivery receipts and replies). The registry (:mod:`notify.providers`) maps names to
these; nothing outside a provider's folder knows a provider by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from huimin.settings import Settings
from notify.sms import SmsProvider


@dataclass(frozen=True)
class StatusReport:
    """One delivery receipt, as the provider pushed it.

    ``phone`` is the number as the provider wrote it (only ever shown masked). When
    ``by_phone`` is set the provider gives one id to a whole call of many numbers, so
    the message is the one to ``phone`` with ``message_id`` (or, after a crash
    recovery recorded it without the id, with ``reference``)."""

    message_id: str
    delivered: bool
    error: str | None
    phone: str
    by_phone: bool = False
    reference: str | None = None


@dataclass(frozen=True)
class ReplyReport:
    """A text a phone sent back to us."""

    text: str
    phone: str


class CallbackFormat(Protocol):
    """How a provider's pushes (``/notify/callbacks/<name>/{status,reply}``) read."""

    @property
    def ack(self) -> Mapping[str, Any]:
        """The JSON body the provider expects back."""

    def status(self, item: Mapping[str, Any]) -> StatusReport:
        """One status report of a push."""

    def reply(self, item: Mapping[str, Any]) -> ReplyReport:
        """One reply of a push."""


@dataclass(frozen=True)
class ProviderPlugin:
    """A provider as the registry knows it."""

    name: str
    # Builds the provider from the settings and the county file (its sms_signature);
    # raises SettingsError naming the variable that is missing or unusable.
    build: Callable[[Settings, Mapping[str, Any]], SmsProvider]
    callbacks: CallbackFormat | None = None  # None: it pushes nothing to us
