"""The SMS channel: one small provider interface and the console provider.

The console provider (the demo's) writes each message to the server log with
the phone masked, and, when ``HUIMIN_SMS_CONSOLE_FILE`` is set, appends it as
one JSON line ``{"to": "<masked phone>", "text": "<full text>"}``. Real
providers (Tencent Cloud, Alibaba Cloud) plug in behind the same interface.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jinja2

from content import TEMPLATES_DIR
from huimin.personal import mask_phone
from huimin.settings import Settings

log = logging.getLogger(__name__)
SEGMENT_CHARS = 70  # one SMS segment of Chinese text
LONG_SEGMENT_CHARS = 67  # each segment of a long (concatenated) message

sms_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR / "sms"), undefined=jinja2.StrictUndefined,
    autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class SmsResult:
    accepted: bool
    provider: str
    message_id: str | None = None
    error: str | None = None
    permanent: bool = False


class SmsProvider(Protocol):
    name: str

    async def send(self, phone: str, text: str) -> SmsResult:
        """Send ``text`` to ``phone`` (11 digits, clear: only ever held in memory)."""


def segments(text: str) -> int:
    """How many billed segments a Chinese SMS takes."""
    if len(text) <= SEGMENT_CHARS:
        return 1
    return -(-len(text) // LONG_SEGMENT_CHARS)


def render_sms(template: str, county: dict[str, Any], **values: Any) -> str:
    """An SMS text from ``content/templates/sms``, signed with the bureau's signature."""
    body = sms_templates.get_template(template).render(county=county, **values).strip()
    return f"【{county['sms_signature']}】{body}"


class ConsoleSms:
    """Prints instead of sending (demo and development)."""

    name = "console"

    def __init__(self, file: Path | None = None) -> None:
        self.file = file
        self._lock = asyncio.Lock()
        self._count = 0

    async def send(self, phone: str, text: str) -> SmsResult:
        masked = mask_phone(phone)
        log.info("SMS to %s: %s", masked, text)
        if self.file is not None:
            line = json.dumps({"to": masked, "text": text}, ensure_ascii=False)
            async with self._lock:
                await asyncio.to_thread(_append, self.file, line)
        self._count += 1
        return SmsResult(accepted=True, provider=self.name, message_id=f"console-{self._count}")


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def sms_provider(settings: Settings) -> SmsProvider:
    """The provider named by ``HUIMIN_SMS_PROVIDER``."""
    return ConsoleSms(settings.sms_console_file)
