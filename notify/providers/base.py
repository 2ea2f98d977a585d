"""What the HTTP SMS providers share (each provider's folder uses these).

Mainland number normalisation, masking phone numbers inside provider messages before
they reach a log or a result, grouping messages that can go out in one call (same
template, same parameters, distinct phones), the loop that sends those groups and turns
a late whole-call failure into per-message "not sent" results instead of losing what
was already accepted, the HTTP provider's common parts, and the helpers a provider's
``settings`` module uses to read and check its variables.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp

from huimin.personal import mask_phone
from huimin.settings import PREFIX, Settings, SettingsError
from notify.sms import ProviderUnavailable, SmsMessage, SmsResult

log = logging.getLogger("notify.providers")

_MAINLAND = re.compile(r"^1[3-9]\d{9}$")
# A mainland mobile number inside free text, with or without +86 / 0086 / 86 in front.
_PHONE_IN_TEXT = re.compile(r"(?<!\d)(?:\+?86|0086)?(1[3-9]\d{9})(?!\d)")

SendBatch = Callable[[Sequence[SmsMessage]], Awaitable[list[SmsResult]]]
Check = Callable[[SmsMessage], str | None]


def mainland_number(raw: str) -> str | None:
    """'+86 138-0013-8000' -> '13800138000'; None when it is not a mainland mobile number."""
    value = re.sub(r"[\s-]+", "", raw or "")
    for prefix in ("+86", "0086", "86"):
        if value.startswith(prefix) and len(value) == len(prefix) + 11:
            value = value[len(prefix):]
            break
    return value if _MAINLAND.match(value) else None


def scrub(text: str) -> str:
    """Mask every mobile number in a provider's free text (error messages can echo them)."""
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(1)), text)


def masked(message: SmsMessage) -> str:
    """The phone of a message for logs: masked, or a placeholder when it is not a number."""
    number = mainland_number(message.phone)
    return mask_phone(number) if number else "<invalid number>"


_SIGNATURE = re.compile(r"^【[^】]*】")
_MASK = re.compile(r"\*+")


def _bare_text(text: str) -> str:
    return _SIGNATURE.sub("", re.sub(r"\s+", "", text or ""))


def same_text(stored: str, text: str) -> bool:
    """Whether a provider's stored copy of an SMS is ``text``.

    Providers keep the content with some parameters masked (Tencent stores digits as
    ``*``): each run of ``*`` in ``stored`` stands for at least one character. The
    signature and whitespace are ignored.
    """
    pieces = _MASK.split(_bare_text(stored))
    pattern = ".+?".join(re.escape(piece) for piece in pieces)
    return bool(pieces) and re.fullmatch(pattern, _bare_text(text), re.DOTALL) is not None


def batch_context(references: Sequence[str], limit: int) -> str:
    """One string standing for the references of a call (SessionContext / OutId).

    A single reference (or several identical ones) is sent as is; several are
    joined with commas when that fits in ``limit`` bytes, otherwise replaced by
    a short hash of the joined references.
    """
    distinct = list(dict.fromkeys(r for r in references if r))
    if not distinct:
        return ""
    joined = ",".join(distinct)
    if len(joined.encode("utf-8")) <= limit:
        return joined
    return "batch-" + hashlib.sha256(joined.encode("utf-8")).hexdigest()[:24]


def group_messages(messages: Sequence[SmsMessage], indexes: Sequence[int],
                   max_size: int) -> list[list[int]]:
    """Indexes of the messages that may share one call, in order of first appearance.

    Messages share a call when template and parameters (in insertion order) are
    identical; a call holds at most ``max_size`` messages and never the same
    phone twice (the provider answers per phone, so a repeat could not be told apart).
    """
    chunks: dict[tuple[Any, ...], list[tuple[list[int], set[str]]]] = {}
    ordered: list[list[int]] = []
    for i in indexes:
        message = messages[i]
        key = (message.template, tuple(message.params.items()))
        phone = mainland_number(message.phone) or message.phone
        candidates = chunks.setdefault(key, [])
        for members, phones in candidates:
            if len(members) < max_size and phone not in phones:
                members.append(i)
                phones.add(phone)
                break
        else:
            members = [i]
            candidates.append((members, {phone}))
            ordered.append(members)
    return ordered


async def send_grouped(provider: str, messages: Sequence[SmsMessage], send_batch: SendBatch,
                       *, max_batch: int, check: Check | None = None) -> list[SmsResult]:
    """Send ``messages`` in as few calls as possible; one result per message, in order.

    ``check`` returns a reason a message cannot be sent at all (a permanent
    error, no call made). ``send_batch`` sends one group and returns a result
    per message or raises :class:`ProviderUnavailable`. Such a failure is raised
    on only while nothing has been accepted yet; after that the remaining
    messages get "not sent" results (not permanent), so that a retry does not
    send again what already went out.
    """
    results: list[SmsResult | None] = [None] * len(messages)
    pending = []
    for i, message in enumerate(messages):
        problem = check(message) if check else None
        if problem:
            results[i] = SmsResult(accepted=False, provider=provider, error=problem,
                                   permanent=True)
        else:
            pending.append(i)
    batches = group_messages(messages, pending, max_batch)
    accepted_any = False
    for n, batch in enumerate(batches):
        try:
            got = await send_batch([messages[i] for i in batch])
        except ProviderUnavailable as exc:
            if not accepted_any:
                raise
            for later in batches[n:]:
                for i in later:
                    results[i] = SmsResult(accepted=False, provider=provider,
                                           error=f"not sent: {exc.reason}")
            break
        for i, result in zip(batch, got, strict=True):
            results[i] = result
        accepted_any = accepted_any or any(r.accepted for r in got)
    return [r for r in results if r is not None]


class HttpSmsProvider:
    """What both HTTP providers share: template and number checks before sending,
    grouping into batch calls, and one client session (call :meth:`close`)."""

    name = "http"
    template_kind = "template"

    templates: dict[str, str]
    timeout: float
    max_batch: int
    _session_factory: Callable[[], aiohttp.ClientSession] | None
    _session: aiohttp.ClientSession | None

    async def send(self, messages: Sequence[SmsMessage]) -> list[SmsResult]:
        return await send_grouped(self.name, messages, self._send_batch,
                                  max_batch=self.max_batch, check=self._check)

    async def _send_batch(self, batch: Sequence[SmsMessage]) -> list[SmsResult]:
        raise NotImplementedError

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _check(self, message: SmsMessage) -> str | None:
        if message.template not in self.templates:
            log.warning("%s: no %s for %r, not sending to %s", self.name,
                        self.template_kind, message.template, masked(message))
            return f"no {self.name.capitalize()} template for {message.template}"
        if mainland_number(message.phone) is None:
            log.warning("%s: not a mainland mobile number (reference %r), not sending",
                        self.name, message.reference)
            return "invalid phone number (not a mainland mobile number)"
        return None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = (self._session_factory() if self._session_factory else
                             aiohttp.ClientSession(
                                 timeout=aiohttp.ClientTimeout(total=self.timeout)))
        return self._session


# ----- settings helpers (for each provider's ``settings`` module) --------------------------


def setting(settings: Settings, variable: str) -> str | None:
    """The value of ``HUIMIN_…`` ``variable``, as read and checked at start (every
    provider variable is a field of :class:`~huimin.settings.Settings`)."""
    value = getattr(settings, variable.removeprefix(PREFIX).lower())
    return None if value is None else str(value)


def required(settings: Settings, variable: str, provider: str) -> str:
    """A variable the provider cannot work without, or a :class:`SettingsError` naming it."""
    value = setting(settings, variable)
    if not value:
        raise SettingsError(f"{variable} is required when HUIMIN_SMS_PROVIDER includes {provider}")
    return value


def template_map(settings: Settings, variable: str, provider: str) -> dict[str, str]:
    """A required map of our template names to the provider's ids (read at start from
    ``name=id,name=id``)."""
    templates = dict(getattr(settings, variable.removeprefix(PREFIX).lower()))
    if not templates:
        raise SettingsError(f"{variable} is required when HUIMIN_SMS_PROVIDER includes {provider}")
    return templates


def sign_name(county: Mapping[str, Any], provider: str) -> str:
    """The bureau's SMS signature (the county file's ``sms_signature``), required."""
    value = str(county.get("sms_signature") or "").strip()
    if not value:
        raise SettingsError(f"sms_signature (in HUIMIN_COUNTY_FILE) is required when "
                            f"HUIMIN_SMS_PROVIDER includes {provider}")
    return value
