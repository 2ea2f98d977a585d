"""Alibaba Cloud SMS (Dysmsapi): the SendSms action of API version 2017-05-25.

One call per group of messages with the same template and parameters (up to
1000 numbers, comma separated in ``PhoneNumbers``), as the official SDK sends
it: a POST whose query string carries every parameter, signed with the RPC
signature (signature version 1.0):

    StringToSign = "POST&%2F&" + percent(canonicalised query)
    Signature    = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))

where the canonicalised query is every parameter but ``Signature``, sorted by
name, each name and value percent-encoded per RFC 3986 (space as %20, ``*`` as
%2A, ``~`` kept).

Aliyun answers a call as a whole (``Code``), so one code applies to every
message of the call:

* "OK": every message accepted, with the call's ``BizId`` as message id;
* the number, template, signature or parameters will never be accepted:
  permanent. A bad number (``isv.MOBILE_NUMBER_ILLEGAL``) or the per-number
  frequency limit (``isv.BUSINESS_LIMIT_CONTROL``) on a call of several
  numbers cannot be pinned on one of them, so that call is resent number by
  number;
* frequency limits and system errors: not accepted, retry later;
* the account cannot send (balance, suspended service, daily or monthly
  limit, permissions), bad credentials or signature, other gateway errors,
  HTTP 5xx, timeouts, network errors, an answer that is not JSON:
  :class:`ProviderUnavailable`.

Every failure carries a :class:`FailureKind` read from the code
(:func:`failure_kind`): the gateway's ``Throttling`` codes (API calls too
frequent) are "too fast"; ``isv.DAY_LIMIT_CONTROL`` (the daily total set in the
console) spends the day; balance, suspended service (``isv.OUT_OF_SERVICE``),
the monthly total, unknown accounts and keys and RAM permissions are account
trouble; ``isv.BUSINESS_LIMIT_CONTROL`` is the per-number limit (one number,
per minute, hour or day), about that message only.

After a crash, :meth:`AliyunSms.find_sent` asks ``QuerySendDetails`` (same signing)
for the number's messages of the day and matches ours by ``OutId`` and template.

Phone numbers are only ever logged masked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp
from yarl import URL

from notify.providers import (
    HttpSmsProvider,
    batch_context,
    mainland_number,
    masked,
    scrub,
    send_grouped,
)
from notify.sms import FailureKind, ProviderUnavailable, SentRecord, SmsMessage, SmsResult

log = logging.getLogger(__name__)

ACTION = "SendSms"
LOOKUP_ACTION = "QuerySendDetails"  # one number's messages of one day, with our OutId
VERSION = "2017-05-25"
LOOKUP_PAGE = 50  # records per QuerySendDetails page (the most Aliyun allows)
CHINA = ZoneInfo("Asia/Shanghai")
MAX_PHONES = 1000  # numbers per SendSms call
OUT_ID_CHARS = 64

# The same answer would come back whatever the number: never retried.
CALL_CODES = frozenset({
    "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL",
    "isv.SMS_SIGN_ILLEGAL",
    "isv.SMS_CONTENT_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.TEMPLATE_PARAMS_ILLEGAL",
    "isv.INVALID_PARAMETERS",
    "isv.INVALID_JSON_PARAM",
    "isv.PARAM_LENGTH_LIMIT",
    "isv.PARAM_NOT_SUPPORT_URL",
    "isv.BLACK_KEY_CONTROL_LIMIT",
    "isv.MOBILE_COUNT_OVER_LIMIT",
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED",
})
# About one of the numbers: permanent for a single number; otherwise resend one by one.
PHONE_CODES = frozenset({"isv.MOBILE_NUMBER_ILLEGAL", "isv.BUSINESS_LIMIT_CONTROL"})
PERMANENT_CODES = CALL_CODES | {"isv.MOBILE_NUMBER_ILLEGAL"}
# The daily total set in the console is spent: until midnight, China time.
DAILY_QUOTA_CODES = frozenset({"isv.DAY_LIMIT_CONTROL"})
# The account cannot send at all just now: let the notifier try another provider.
ACCOUNT_CODES = frozenset({
    "isv.AMOUNT_NOT_ENOUGH",
    "isv.OUT_OF_SERVICE",
    "isv.MONTH_LIMIT_CONTROL",
    "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL",
    "isv.PRODUCT_UN_SUBSCRIPT",
    "isv.PRODUCT_UNSUBSCRIBE",
    "isv.DENY_IP_RANGE",
    "isp.RAM_PERMISSION_DENY",
    # Gateway answers about the key itself.
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
})


ACCOUNT_WIDE_CODES = DAILY_QUOTA_CODES | ACCOUNT_CODES


def failure_kind(code: str) -> FailureKind:
    """What an Alibaba Cloud error code means for the notifier."""
    if code.startswith("Throttling"):  # the API gateway's flow control: calls too frequent
        return FailureKind.THROTTLED
    if code in DAILY_QUOTA_CODES:
        return FailureKind.DAILY_QUOTA
    if code in ACCOUNT_CODES:
        return FailureKind.ACCOUNT
    if code in PERMANENT_CODES or code in PHONE_CODES:
        return FailureKind.REFUSED
    return FailureKind.UNREACHABLE


# --- RPC signature -------------------------------------------------------------------------


def percent_encode(value: str) -> str:
    """RFC 3986: letters, digits, '-', '_', '.', '~' kept; everything else %XX of UTF-8."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """Every parameter but Signature, sorted by name, encoded and joined with '&'."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}"
                    for k, v in sorted(params.items()) if k != "Signature")


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def rpc_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """base64(HMAC-SHA1(secret + '&', StringToSign))."""
    digest = hmac.new((secret + "&").encode("utf-8"),
                      rpc_string_to_sign(method, params).encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def iso_timestamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the provider -------------------------------------------------------------------------


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
        days = dict.fromkeys(moment.astimezone(CHINA).strftime("%Y%m%d")
                             for moment in (since, until))
        for day in days:
            answer = await self._call(self._common(LOOKUP_ACTION) | {
                "PhoneNumber": number, "SendDate": day,
                "PageSize": str(LOOKUP_PAGE), "CurrentPage": "1"})
            code = str(answer.get("Code", ""))
            if code != "OK":
                raise ProviderUnavailable(self.name, f"{LOOKUP_ACTION}: {code or 'no code'}",
                                          kind=failure_kind(code), code=code or None)
            details = answer.get("SmsSendDetailDTOs") or {}
            records = details.get("SmsSendDetailDTO") if isinstance(details, dict) else None
            for record in records if isinstance(records, list) else []:
                if (isinstance(record, dict) and record.get("OutId") == message.reference
                        and record.get("TemplateCode") == template):
                    status = record.get("SendStatus")
                    return SentRecord(
                        provider=self.name, delivered={3: True, 2: False}.get(status),
                        error=(str(record.get("ErrCode") or "") or "delivery failed")
                        if status == 2 else None)
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
