"""The console provider (the demo's) sends nothing: it logs the masked phone and the
template name (never the text, which may carry a code), appends each message to
``HUIMIN_SMS_CONSOLE_FILE`` when set, as one JSON line ``{"to": "<masked phone>",
"text": "<full text>"}``, and in the demo prints the text on the demo's terminal
so that whoever tries it can read the code.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from huimin.personal import mask_phone
from notify.sms import SmsMessage, SmsResult

log = logging.getLogger("notify.sms")


@dataclass
class ConsoleSms:
    """Sends nothing (demo and development): see the module's description."""

    file: Path | None = None
    show: bool = False  # the demo: print each text (codes included) on stdout
    name: str = "console"
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _count: int = 0

    async def send(self, messages: Sequence[SmsMessage]) -> list[SmsResult]:
        results = []
        for message in messages:
            masked = mask_phone(message.phone)
            log.info("SMS %s to %s (console provider: not really sent)", message.template,
                     masked)
            if self.show:
                print(f"[演示短信，未真正发送] 发给 {masked}：{message.text}", flush=True)
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

