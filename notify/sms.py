"""The SMS channel: messages, the provider interface and the console provider.

Messages are template based, as Chinese SMS providers require: each carries our
template name and its parameters (the provider maps the name to its own
approved template id) and the full rendered text (for the console provider,
length checks and the log). Real providers live in ``notify.providers``.

The console provider (the demo's) writes each message to the server log with
the phone masked, and, when ``HUIMIN_SMS_CONSOLE_FILE`` is set, appends it as
one JSON line ``{"to": "<masked phone>", "text": "<full text>"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jinja2

from content import TEMPLATES_DIR
from huimin.personal import mask_phone

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


class ProviderUnavailable(Exception):
    """The whole call failed (network, auth, throttling): try later or another provider."""

    def __init__(self, provider: str, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.retry_after = retry_after


class SmsProvider(Protocol):
    name: str

    async def send(self, messages: Sequence[SmsMessage]) -> list[SmsResult]:
        """Send messages; one result per message, in order. Raises ProviderUnavailable."""


def segments(text: str) -> int:
    """How many billed segments a Chinese SMS takes (70 characters, or 67 each when long)."""
    if len(text) <= SEGMENT_CHARS:
        return 1
    return -(-len(text) // LONG_SEGMENT_CHARS)


def sms_message(template: str, county: Mapping[str, Any], phone: str,
                params: Mapping[str, Any], reference: str = "",
                urgent: bool = False) -> SmsMessage:
    """Render ``content/templates/sms/<template>.j2`` and sign it with the bureau's name."""
    clean = {k: str(v) for k, v in params.items()}
    body = sms_templates.get_template(f"{template}.j2").render(county=county, **clean).strip()
    return SmsMessage(phone=phone, template=template, params=clean,
                      text=f"【{county['sms_signature']}】{body}", reference=reference,
                      urgent=urgent)


@dataclass
class ConsoleSms:
    """Prints instead of sending (demo and development)."""

    file: Path | None = None
    name: str = "console"
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _count: int = 0

    async def send(self, messages: Sequence[SmsMessage]) -> list[SmsResult]:
        results = []
        for message in messages:
            masked = mask_phone(message.phone)
            log.info("SMS to %s: %s", masked, message.text)
            if self.file is not None:
                line = json.dumps({"to": masked, "text": message.text}, ensure_ascii=False)
                async with self._lock:
                    await asyncio.to_thread(_append, self.file, line)
            self._count += 1
            results.append(SmsResult(accepted=True, provider=self.name,
                                     message_id=f"console-{self._count}"))
        return results


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")

