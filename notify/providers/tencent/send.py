"""Tencent Cloud SMS: the client (SendSms, and DescribeSendRecordList for
:mod:`.lookup`). See the package's description for how answers are read."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp
from yarl import URL

from notify.providers.base import (
    HttpSmsProvider,
    batch_context,
    mainland_number,
    masked,
    scrub,
    send_grouped,
)
from notify.providers.tencent.codes import (
    ACCOUNT_WIDE_CODES,
    CALL_CODES,
    PERMANENT_CODES,
    PHONE_CODES,
    failure_kind,
)
from notify.providers.tencent.lookup import LOOKUP_ACTION, lookup_body, sent_record
from notify.providers.tencent.signing import (
    CONTENT_TYPE,
    SERVICE,
    host_header,
    tc3_authorization,
)
from notify.sms import (
    ACCOUNT_KINDS,
    FailureKind,
    ProviderUnavailable,
    SentRecord,
    SmsMessage,
    SmsResult,
)

log = logging.getLogger("notify.providers.tencent")

ACTION = "SendSms"
VERSION = "2021-01-11"
MAX_PHONES = 200  # numbers per SendSms call
SESSION_CONTEXT_BYTES = 500  # Tencent: "less than 512 bytes"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


# --- the provider -------------------------------------------------------------------------


class TencentSms(HttpSmsProvider):
    """Sends through Tencent Cloud SMS. Call :meth:`close` when done."""

    name = "tencent"
    template_kind = "template id"

    def __init__(self, endpoint: str, region: str, secret_id: str, secret_key: str, app_id: str,
                 sign_name: str, templates: Mapping[str, str], *, timeout: float = 10.0,
                 session_factory: Callable[[], aiohttp.ClientSession] | None = None,
                 max_batch: int = MAX_PHONES, clock: Callable[[], float] = time.time) -> None:
        self.url = URL(endpoint)
        self.host = host_header(self.url)
        self.region = region
        self.secret_id = secret_id
        self._secret_key = secret_key
        self.app_id = app_id
        self.sign_name = sign_name
        self.templates = dict(templates)
        self.timeout = timeout
        self.max_batch = max(1, min(max_batch, MAX_PHONES))
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._clock = clock

    def __repr__(self) -> str:  # never show the secret key
        return f"TencentSms(endpoint={str(self.url)!r}, app_id={self.app_id!r})"


    async def _send_batch(self, batch: Sequence[SmsMessage]) -> list[SmsResult]:
        numbers = [mainland_number(m.phone) or "" for m in batch]
        first = batch[0]
        body = {
            "PhoneNumberSet": ["+86" + n for n in numbers],
            "SmsSdkAppId": self.app_id,
            "SignName": self.sign_name,
            "TemplateId": self.templates[first.template],
            "TemplateParamSet": [str(v) for v in first.params.values()],
            "SessionContext": batch_context([m.reference for m in batch], SESSION_CONTEXT_BYTES),
        }
        response = await self._call(body)
        error = response.get("Error")
        if error is not None:
            return await self._whole_call_error(batch, error, response.get("RequestId"))
        statuses = response.get("SendStatusSet")
        if not isinstance(statuses, list):
            raise ProviderUnavailable(self.name, "answer without SendStatusSet")
        by_number: dict[str, dict[str, Any]] = {}
        for entry in statuses:
            if isinstance(entry, dict):
                number = mainland_number(str(entry.get("PhoneNumber", "")))
                if number:
                    by_number[number] = entry
        entries = [by_number.get(n) for n in numbers]
        codes = [str(e.get("Code", "")) if e else "" for e in entries]
        if all(code in ACCOUNT_WIDE_CODES for code in codes):
            entry = entries[0] or {}
            raise ProviderUnavailable(
                self.name, f"{codes[0]}: {scrub(str(entry.get('Message', '')))}",
                kind=failure_kind(codes[0]), code=codes[0])
        results = [self._result(message, entry) for message, entry in zip(batch, entries,
                                                                            strict=True)]
        log.info("tencent: template %s to %d number(s): %d accepted (request %s)",
                 first.template, len(batch), sum(r.accepted for r in results),
                 response.get("RequestId"))
        return results

    def _result(self, message: SmsMessage, entry: dict[str, Any] | None) -> SmsResult:
        if entry is None:
            log.warning("tencent: no status for %s in the answer", masked(message))
            return SmsResult(accepted=False, provider=self.name,
                             error="no status for this number in the answer")
        code = str(entry.get("Code", ""))
        if code == "Ok":
            return SmsResult(accepted=True, provider=self.name,
                             message_id=str(entry.get("SerialNo") or "") or None)
        permanent = code in PERMANENT_CODES
        kind = failure_kind(code)
        log.warning("tencent: %s for %s (%s)", code, masked(message),
                    "permanent" if permanent else
                    "account-wide" if kind in ACCOUNT_KINDS else "will retry")
        return SmsResult(accepted=False, provider=self.name, permanent=permanent, kind=kind,
                         error=f"{code}: {scrub(str(entry.get('Message', '')))}")

    async def _whole_call_error(self, batch: Sequence[SmsMessage], error: Any,
                                request_id: Any) -> list[SmsResult]:
        error = error if isinstance(error, dict) else {}
        code = str(error.get("Code", "") or "UnknownError")
        text = scrub(str(error.get("Message", "")))
        reason = f"{code}: {text}"
        if code in CALL_CODES or (code in PHONE_CODES and len(batch) == 1):
            log.warning("tencent: call refused with %s for %d number(s) (request %s)",
                        code, len(batch), request_id)
            return [SmsResult(accepted=False, provider=self.name, error=reason, permanent=True,
                              kind=FailureKind.REFUSED) for _ in batch]
        if code in PHONE_CODES:
            log.warning("tencent: call of %d numbers refused with %s; resending one by one",
                        len(batch), code)
            return await send_grouped(self.name, batch, self._send_batch, max_batch=1)
        log.warning("tencent: call failed with %s (request %s)", code, request_id)
        raise ProviderUnavailable(self.name, reason, kind=failure_kind(code), code=code)

    async def find_sent(self, message: SmsMessage, since: datetime,
                        until: datetime) -> SentRecord | None:
        """Tencent's send record of ``message`` between ``since`` and ``until``.

        DescribeSendRecordList lists one number's messages (newest first) with the
        content Tencent stores (some digits masked) but not our SessionContext, so a
        record is ours when it was submitted in the window and its content is the
        text we would send. SendStatus 1 means the submission failed: not sent.
        """
        number = mainland_number(message.phone)
        if number is None:
            return None
        response = await self._call(lookup_body(self.app_id, number, since, until),
                                    action=LOOKUP_ACTION)
        return sent_record(self.name, response, message)

    async def _call(self, body: dict[str, Any], action: str = ACTION) -> dict[str, Any]:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = int(self._clock())
        headers = {
            "Authorization": tc3_authorization(
                self.secret_id, self._secret_key, service=SERVICE, host=self.host,
                payload=payload, timestamp=timestamp, uri=self.url.raw_path or "/"),
            "Content-Type": CONTENT_TYPE,
            "Host": self.host,
            "X-TC-Action": action,
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self.region,
        }
        try:
            async with self._client().post(
                    self.url, data=payload, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                raw = await response.read()
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            raise ProviderUnavailable(self.name, f"no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(
                self.name, f"network error: {type(exc).__name__}: {scrub(str(exc))}") from None
        if status >= 500 or status == 429:
            # 429, or a busy gateway naming when to come back: too fast, not broken.
            too_fast = status == 429 or retry_after is not None
            raise ProviderUnavailable(
                self.name, f"HTTP {status}", retry_after=retry_after,
                kind=FailureKind.THROTTLED if too_fast else FailureKind.UNREACHABLE)
        try:
            data = json.loads(raw)
        except ValueError:
            raise ProviderUnavailable(self.name,
                                      f"answer is not JSON (HTTP {status})") from None
        answer = data.get("Response") if isinstance(data, dict) else None
        if not isinstance(answer, dict):
            raise ProviderUnavailable(self.name, f"answer without Response (HTTP {status})")
        if status != 200 and "Error" not in answer:
            raise ProviderUnavailable(self.name, f"HTTP {status}")
        return answer
