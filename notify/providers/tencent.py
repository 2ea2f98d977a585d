"""Tencent Cloud SMS: the SendSms action of API version 2021-01-11.

One HTTPS POST of JSON to ``sms.tencentcloudapi.com`` per group of messages
with the same template and parameters (up to 200 numbers, as
``+86XXXXXXXXXXX``), signed with TC3-HMAC-SHA256 (Tencent Cloud's "signature
v3"): the headers ``X-TC-Action``, ``X-TC-Version``, ``X-TC-Timestamp`` and
``X-TC-Region`` and an ``Authorization`` of the form

    TC3-HMAC-SHA256 Credential=<SecretId>/<UTC date>/sms/tc3_request,
    SignedHeaders=content-type;host, Signature=<hex>

Tencent answers each number on its own (``Response.SendStatusSet``, ``Code``
"Ok" or an error code) or the whole call with ``Response.Error``. How the codes
are read:

* "Ok": accepted, ``SerialNo`` is the message id;
* a bad or opted-out number, or a template / signature / parameter the
  provider will never accept: permanent (never retried);
* account-wide trouble (package balance used up, arrears, the app's daily
  limit) reported for every number of a call with nothing accepted: the provider
  is unavailable (kind ``DAILY_QUOTA`` or ``ACCOUNT``), so the notifier sets it
  aside and tries the next one; reported for only some numbers (the limit ran out
  in the middle of a call), those results carry the same kind;
* anything else per number (the per-number frequency limits, internal errors):
  not accepted, retry later;
* a whole-call ``Error`` (AuthFailure.*, RequestLimitExceeded, InternalError,
  ...), HTTP 5xx, a timeout, a network error or an answer that is not JSON:
  :class:`ProviderUnavailable`. A whole-call error naming one bad number is
  permanent for a single-number call; a call of several numbers is then
  resent number by number so that the bad one can be told from the others.

Every failure carries a :class:`FailureKind` read from the code
(:func:`failure_kind`): ``RequestLimitExceeded`` and its sub-codes (API calls
too frequent; SendSms allows 3000 a second) are "too fast"; the app's daily
limits (``LimitExceeded.AppDailyLimit`` and the like, the "日下发条数" set in the
console) spend the day; the per-number limits (``LimitExceeded.PhoneNumber*``,
``LimitExceeded.DeliveryFrequencyLimit``) concern one message only.

After a crash, :meth:`TencentSms.find_sent` asks ``DescribeSendRecordList`` (same
signing, same endpoint) whether a message went out: Tencent keeps no reference of
ours there, so a record is matched by number, time and content.

Phone numbers are only ever logged masked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from notify.providers import (
    HttpSmsProvider,
    batch_context,
    mainland_number,
    masked,
    same_text,
    scrub,
    send_grouped,
)
from notify.sms import (
    ACCOUNT_KINDS,
    FailureKind,
    ProviderUnavailable,
    SentRecord,
    SmsMessage,
    SmsResult,
)

log = logging.getLogger(__name__)

ACTION = "SendSms"
LOOKUP_ACTION = "DescribeSendRecordList"  # one number's send records, last 72 hours
VERSION = "2021-01-11"
SERVICE = "sms"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json"
SIGNED_HEADERS = "content-type;host"
MAX_PHONES = 200  # numbers per SendSms call
SESSION_CONTEXT_BYTES = 500  # Tencent: "less than 512 bytes"
LOOKUP_LIMIT = 50  # records per DescribeSendRecordList call
SUBMITTED = frozenset({2, 3, 4})  # delivered, on its way, delivery failed (1: not submitted)

# Per number: the number itself is bad or opted out.
PHONE_CODES = frozenset({
    "InvalidParameterValue.IncorrectPhoneNumber",
    "FailedOperation.PhoneNumberInBlacklist",
    "FailedOperation.PhoneNumberOnBlacklist",
})
# The template, signature or parameters of the call will not be accepted as they are.
CALL_CODES = frozenset({
    "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
    "UnsupportedOperation.UnsuportedRegion",
    "FailedOperation.TemplateIncorrectOrUnapproved",
    "FailedOperation.SignatureIncorrectOrUnapproved",
    "FailedOperation.MissingTemplateList",
    "FailedOperation.MissingSignatureList",
    "FailedOperation.ContainSensitiveWord",
    "InvalidParameterValue.TemplateParameterFormatError",
    "InvalidParameterValue.TemplateParameterLengthLimit",
    "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter",
    "InvalidParameterValue.ContentLengthLimit",
})
PERMANENT_CODES = PHONE_CODES | CALL_CODES
# The app's daily sending limits (set in the console): spent until midnight, China time.
DAILY_QUOTA_CODES = frozenset({
    "LimitExceeded.AppDailyLimit",
    "LimitExceeded.DailyLimit",
    "LimitExceeded.AppMainlandChinaDailyLimit",
    "LimitExceeded.AppGlobalDailyLimit",
})
# Trouble with the account rather than the message: when every number of a call
# reports one of these (or a daily limit), the provider as a whole is unavailable.
ACCOUNT_CODES = frozenset({
    "FailedOperation.InsufficientBalanceInSmsPackage",
    "UnauthorizedOperation.SerivceSuspendDueToArrears",
    "UnauthorizedOperation.SdkAppIdIsDisabled",
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
    "UnauthorizedOperation.RequestIpNotInWhitelist",
    "UnauthorizedOperation.RequestPermissionDeny",
    "InvalidParameterValue.SdkAppIdNotExist",
    # Whole-call errors about the key itself.
    "AuthFailure.SecretIdNotFound",
    "AuthFailure.InvalidSecretId",
    "AuthFailure.UnauthorizedOperation",
})
ACCOUNT_WIDE_CODES = DAILY_QUOTA_CODES | ACCOUNT_CODES
# One number got too many messages (per 30 s, hour, day, or the console's frequency rule).
NUMBER_LIMIT_CODES = frozenset({
    "LimitExceeded.PhoneNumberThirtySecondLimit",
    "LimitExceeded.PhoneNumberOneHourLimit",
    "LimitExceeded.PhoneNumberDailyLimit",
    "LimitExceeded.PhoneNumberSameContentDailyLimit",
    "LimitExceeded.DeliveryFrequencyLimit",
})


def failure_kind(code: str) -> FailureKind:
    """What a Tencent error code means for the notifier."""
    if code.startswith("RequestLimitExceeded"):  # API call frequency (and its sub-codes)
        return FailureKind.THROTTLED
    if code in DAILY_QUOTA_CODES:
        return FailureKind.DAILY_QUOTA
    if code in ACCOUNT_CODES:
        return FailureKind.ACCOUNT
    if code in PERMANENT_CODES or code in NUMBER_LIMIT_CODES:
        return FailureKind.REFUSED
    return FailureKind.UNREACHABLE


# --- TC3-HMAC-SHA256 ------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tc3_date(timestamp: int) -> str:
    """The UTC date of the timestamp (never local time: the scope breaks at midnight)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def tc3_canonical_request(*, method: str, uri: str, query: str, content_type: str, host: str,
                          payload: bytes) -> str:
    """Step 1: method, URI, query, the two signed headers, their names, the payload hash."""
    headers = f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n"
    return "\n".join([method, uri, query, headers, SIGNED_HEADERS, sha256_hex(payload)])


def tc3_string_to_sign(*, timestamp: int, service: str, canonical_request: str) -> str:
    """Step 2: algorithm, timestamp, credential scope, hash of the canonical request."""
    scope = f"{tc3_date(timestamp)}/{service}/tc3_request"
    return "\n".join([ALGORITHM, str(timestamp), scope,
                      sha256_hex(canonical_request.encode("utf-8"))])


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    """Step 3: derive the signing key from the secret, date and service; sign; hex."""
    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    secret_date = mac(("TC3" + secret_key).encode("utf-8"), date)
    secret_service = mac(secret_date, service)
    secret_signing = mac(secret_service, "tc3_request")
    return hmac.new(secret_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def tc3_authorization(secret_id: str, secret_key: str, *, service: str, host: str,
                      payload: bytes, timestamp: int, content_type: str = CONTENT_TYPE,
                      method: str = "POST", uri: str = "/", query: str = "") -> str:
    """Step 4: the ``Authorization`` header for one request."""
    canonical = tc3_canonical_request(method=method, uri=uri, query=query,
                                      content_type=content_type, host=host, payload=payload)
    to_sign = tc3_string_to_sign(timestamp=timestamp, service=service,
                                 canonical_request=canonical)
    date = tc3_date(timestamp)
    signature = tc3_signature(secret_key, date, service, to_sign)
    return (f"{ALGORITHM} Credential={secret_id}/{date}/{service}/tc3_request, "
            f"SignedHeaders={SIGNED_HEADERS}, Signature={signature}")


def host_header(url: URL) -> str:
    """What goes in (and is signed as) the Host header: the port only when not the default."""
    host = (url.raw_host or "").lower()
    if url.explicit_port is not None and not url.is_default_port():
        host += f":{url.port}"
    return host


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
        response = await self._call({
            "PhoneNumber": "+86" + number, "SmsSdkAppId": self.app_id,
            "BeginTime": int(since.timestamp()), "EndTime": int(until.timestamp()),
            "Limit": LOOKUP_LIMIT, "Offset": 0}, action=LOOKUP_ACTION)
        error = response.get("Error")
        if error is not None:
            code = str(error.get("Code", "")) if isinstance(error, dict) else ""
            raise ProviderUnavailable(self.name, f"{LOOKUP_ACTION}: {code or 'error'}",
                                      kind=failure_kind(code), code=code or None)
        records = response.get("SendRecordSet")
        if not isinstance(records, list):
            raise ProviderUnavailable(self.name, f"{LOOKUP_ACTION}: answer without "
                                      "SendRecordSet")
        for record in records:
            if not isinstance(record, dict) or record.get("SendStatus") not in SUBMITTED:
                continue
            if same_text(str(record.get("Content", "")), message.text):
                status = record["SendStatus"]
                return SentRecord(
                    provider=self.name, message_id=str(record.get("SerialNo") or "") or None,
                    delivered={2: True, 4: False}.get(status),
                    error=(str(record.get("StatusCode") or "") or "delivery failed")
                    if status == 4 else None)
        return None

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
