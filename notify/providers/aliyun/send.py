"""Alibaba Cloud SMS: the client (SendSms, and QuerySendDetails for :mod:`.lookup`).
See the package's description for how answers are read."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp
from yarl import URL

from notify.providers.aliyun.codes import (
    ACCOUNT_WIDE_CODES,
    PERMANENT_CODES,
    PHONE_CODES,
    failure_kind,
)
from notify.providers.aliyun.lookup import LOOKUP_ACTION, lookup_days, lookup_params, sent_record
from notify.providers.aliyun.signing import iso_timestamp, percent_encode, rpc_signature
from notify.providers.base import (
    HttpSmsProvider,
    batch_context,
    mainland_number,
    masked,
    scrub,
    send_grouped,
)
from notify.sms import FailureKind, ProviderUnavailable, SentRecord, SmsMessage, SmsResult

log = logging.getLogger("notify.providers.aliyun")

ACTION = "SendSms"
VERSION = "2017-05-25"
MAX_PHONES = 1000  # numbers per SendSms call
OUT_ID_CHARS = 64


class AliyunSms(HttpSmsProvider):
    """Sends through Alibaba Cloud SMS. Call :meth:`close` when done."""

    name = "aliyun"
    template_kind = "template code"

    def __init__(self, endpoint: str, access_key_id: str, access_key_secret: str,
                 sign_name: str, templates: Mapping[str, str], *, timeout: float = 10.0,
                 session_factory: Callable[[], aiohttp.ClientSession] | None = None,
                 max_batch: int = MAX_PHONES, clock: Callable[[], float] = time.time) -> None:
        self.url = URL(endpoint)
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.sign_name = sign_name
        self.templates = dict(templates)
        self.timeout = timeout
        self.max_batch = max(1, min(max_batch, MAX_PHONES))
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._clock = clock

    def __repr__(self) -> str:  # never show the secret
        return f"AliyunSms(endpoint={str(self.url)!r}, access_key_id={self.access_key_id!r})"


    def _common(self, action: str) -> dict[str, str]:
        return {
            "AccessKeyId": self.access_key_id,
            "Action": action,
            "Format": "JSON",
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": iso_timestamp(self._clock()),
            "Version": VERSION,
        }

    def _params(self, batch: Sequence[SmsMessage]) -> dict[str, str]:
        first = batch[0]
        params = self._common(ACTION) | {
            "PhoneNumbers": ",".join(mainland_number(m.phone) or "" for m in batch),
            "SignName": self.sign_name,
            "TemplateCode": self.templates[first.template],
        }
        if first.params:
            params["TemplateParam"] = json.dumps({k: str(v) for k, v in first.params.items()},
                                                 ensure_ascii=False, separators=(",", ":"))
        out_id = batch_context([m.reference for m in batch], OUT_ID_CHARS)
        if out_id:
            params["OutId"] = out_id
        return params

    async def _send_batch(self, batch: Sequence[SmsMessage]) -> list[SmsResult]:
        answer = await self._call(self._params(batch))
        code = str(answer.get("Code", ""))
        reason = f"{code}: {scrub(str(answer.get('Message', '')))}"
        request_id = answer.get("RequestId")
        template = batch[0].template
        if code == "OK":
            biz_id = str(answer.get("BizId") or "") or None
            log.info("aliyun: template %s to %d number(s): accepted (request %s)",
                     template, len(batch), request_id)
            return [SmsResult(accepted=True, provider=self.name, message_id=biz_id)
                    for _ in batch]
        if code in PHONE_CODES and len(batch) > 1:
            log.warning("aliyun: call of %d numbers refused with %s; resending one by one",
                        len(batch), code)
            return await send_grouped(self.name, batch, self._send_batch, max_batch=1)
        kind = failure_kind(code)
        if code in ACCOUNT_WIDE_CODES or not code.startswith(("isv.", "isp.")):
            log.warning("aliyun: call failed with %s (request %s)", code or "no code", request_id)
            raise ProviderUnavailable(self.name, reason, kind=kind, code=code or None)
        permanent = code in PERMANENT_CODES
        who = masked(batch[0]) if len(batch) == 1 else f"{len(batch)} numbers"
        log.warning("aliyun: %s for %s (%s)", code, who,
                    "permanent" if permanent else "will retry")
        return [SmsResult(accepted=False, provider=self.name, error=reason, permanent=permanent,
                          kind=kind) for _ in batch]

    async def find_sent(self, message: SmsMessage, since: datetime,
                        until: datetime) -> SentRecord | None:
        """Aliyun's record of ``message``: QuerySendDetails lists one number's messages
        of one day (China time), each with the ``OutId`` we sent, so a record is ours
        when its OutId is our reference and its template is the message's."""
        number = mainland_number(message.phone)
        template = self.templates.get(message.template)
        if number is None or template is None or not message.reference:
            return None
        for day in lookup_days(since, until):
            answer = await self._call(self._common(LOOKUP_ACTION) | lookup_params(number, day))
            found = sent_record(self.name, answer, message, template)
            if found is not None:
                return found
        return None

    async def _call(self, params: dict[str, str]) -> dict[str, Any]:
        signed = dict(params, Signature=rpc_signature("POST", params, self._secret))
        query = "&".join(f"{percent_encode(k)}={percent_encode(v)}"
                         for k, v in sorted(signed.items()))
        url = URL(str(self.url.with_query(None).with_fragment(None)).rstrip("/") + "/?" + query,
                  encoded=True)
        try:
            async with self._client().post(
                    url, timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            raise ProviderUnavailable(self.name, f"no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(
                self.name, f"network error: {type(exc).__name__}: {scrub(str(exc))}") from None
        if status >= 500:
            raise ProviderUnavailable(self.name, f"HTTP {status}")
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ProviderUnavailable(self.name,
                                      f"answer is not JSON (HTTP {status})") from None
        if not isinstance(answer, dict):
            raise ProviderUnavailable(self.name, f"answer is not a JSON object (HTTP {status})")
        if status != 200 and not str(answer.get("Code", "")).startswith(("isv.", "isp.")):
            code = str(answer.get("Code") or "")
            kind = failure_kind(code) if code else (
                FailureKind.THROTTLED if status == 429 else FailureKind.UNREACHABLE)
            raise ProviderUnavailable(
                self.name, f"{code or f'HTTP {status}'}: {scrub(str(answer.get('Message', '')))}",
                kind=kind, code=code or None)
        return answer
