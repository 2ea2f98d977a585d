"""The SMS channel: messages, the provider interface and its typed failures.

Messages are template based, as Chinese SMS providers require: each carries our
template name and its parameters (the provider maps the name to its own
approved template id) and the full rendered text (for the console provider,
length checks and the log). The providers live in ``notify.providers``, one folder each.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any, Protocol

import jinja2

from content import TEMPLATES_DIR

log = logging.getLogger(__name__)
SEGMENT_CHARS = 70  # one SMS segment of Chinese text
LONG_SEGMENT_CHARS = 67  # each segment of a long (concatenated) message

sms_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR / "sms"), undefined=jinja2.StrictUndefined,
    autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class SmsMessage:
    """One SMS to one phone. ``phone`` is clear and only ever held in memory."""

    phone: str
    template: str
    params: Mapping[str, str]
    text: str
    reference: str = ""  # our own key for the message, echoed back by providers
    urgent: bool = False


@dataclass(frozen=True)
class SmsResult:
    """What the provider said about one message."""

    accepted: bool
    provider: str
    message_id: str | None = None
    error: str | None = None
    permanent: bool = False  # a permanent error is never retried (bad number, opted out)
    kind: FailureKind | None = None  # why it was not accepted, as the provider's code says


@dataclass(frozen=True)
class SentRecord:
    """A provider's own record of a message we sent (found after a crash)."""

    provider: str
    message_id: str | None = None
    delivered: bool | None = None  # True delivered, False failed, None not known yet
    error: str | None = None


class FailureKind(StrEnum):
    """Why a provider did not take a message, decided by the provider from its own error
    code (never by reading the text): what the notifier does next depends on it alone.

    * ``THROTTLED``: we called too fast (API call frequency); slow down and ask again,
      the provider is fine.
    * ``DAILY_QUOTA``: the account's daily sending limit is spent; nothing goes through
      this provider until the limit resets at midnight, China time.
    * ``ACCOUNT``: the account cannot send (balance or package used up, arrears,
      suspended service, missing permission, unknown key, monthly limit); nothing goes
      through until someone fixes it in the provider's console.
    * ``UNREACHABLE``: no usable answer (network, timeout, HTTP 5xx, internal error).
    * ``REFUSED``: about this message only (a bad or blacklisted number, the per-number
      frequency limits, the template); other messages are not affected.
    """

    THROTTLED = "throttled"
    DAILY_QUOTA = "daily_quota"
    ACCOUNT = "account"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"


# The kinds that make the whole provider unusable for a while (it is set aside).
ACCOUNT_KINDS = frozenset({FailureKind.DAILY_QUOTA, FailureKind.ACCOUNT})


class ProviderUnavailable(Exception):
    """The whole call failed: ``kind`` says why (see :class:`FailureKind`); try later or
    another provider. ``code`` is the provider's error code when it gave one."""

    def __init__(self, provider: str, reason: str, *,
                 kind: FailureKind = FailureKind.UNREACHABLE,
                 retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.kind = kind
        self.retry_after = retry_after
        self.code = code


class SmsProvider(Protocol):
    name: str

    async def send(self, messages: Sequence[SmsMessage]) -> list[SmsResult]:
        """Send messages; one result per message, in order. Raises ProviderUnavailable."""


class SmsLookup(Protocol):
    """A provider that can say whether it sent a message (after a crash, the next worker
    asks before sending again). Providers without it (the console) cannot tell."""

    name: str

    async def find_sent(self, message: SmsMessage, since: datetime,
                        until: datetime) -> SentRecord | None:
        """The provider's record of ``message`` (sent with ``message.reference``) made
        between ``since`` and ``until``, or None. Raises ProviderUnavailable."""


def segments(text: str) -> int:
    """How many billed segments a Chinese SMS takes (70 characters, or 67 each when long)."""
    if len(text) <= SEGMENT_CHARS:
        return 1
    return -(-len(text) // LONG_SEGMENT_CHARS)


_VARIABLE = re.compile(r"{{\s*([A-Za-z_]\w*)\s*}}")


@cache
def template_variables(template: str) -> tuple[str, ...]:
    """The parameters of an SMS template in order of first appearance (``county`` is
    ours, not a parameter). Tencent numbers template parameters {1}, {2}, … in this
    order, so every message lists its parameters this way."""
    source = (TEMPLATES_DIR / "sms" / f"{template}.j2").read_text(encoding="utf-8")
    return tuple(dict.fromkeys(name for name in _VARIABLE.findall(source) if name != "county"))


def provider_template_text(template: str, county: Mapping[str, Any],
                           style: str = "tencent") -> str:
    """The template body as it is registered with a provider (without the signature):
    Tencent numbers the parameters ``{1}``, ``{2}``; Aliyun names them ``${name}``."""
    names = template_variables(template)
    if style == "tencent":
        values = {name: f"{{{i}}}" for i, name in enumerate(names, start=1)}
    elif style == "aliyun":
        values = {name: f"${{{name}}}" for name in names}
    else:
        raise ValueError(f"unknown provider style {style!r}")
    return sms_templates.get_template(f"{template}.j2").render(county=county, **values).strip()


def sms_message(template: str, county: Mapping[str, Any], phone: str,
                params: Mapping[str, Any], reference: str = "",
                urgent: bool = False) -> SmsMessage:
    """Render ``content/templates/sms/<template>.j2`` and sign it with the bureau's name.
    The message carries exactly the template's parameters, in the template's own order
    (see :func:`template_variables`): a provider template takes no others."""
    order = template_variables(template)
    clean = {k: str(params[k]) for k in order if k in params}  # extras are not sent
    body = sms_templates.get_template(f"{template}.j2").render(county=county, **clean).strip()
    return SmsMessage(phone=phone, template=template, params=clean,
                      text=f"【{county['sms_signature']}】{body}", reference=reference,
                      urgent=urgent)
