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

In this folder: ``send`` (the client), ``lookup`` (DescribeSendRecordList
after a crash), ``receipts`` (its pushes), ``settings`` (``HUIMIN_SMS_TENCENT_*``),
``codes`` (error codes to failure kinds), ``signing`` (TC3-HMAC-SHA256).
"""

from __future__ import annotations

from notify.providers.plugin import ProviderPlugin
from notify.providers.tencent.codes import (
    ACCOUNT_CODES,
    ACCOUNT_WIDE_CODES,
    CALL_CODES,
    DAILY_QUOTA_CODES,
    NUMBER_LIMIT_CODES,
    PERMANENT_CODES,
    PHONE_CODES,
    failure_kind,
)
from notify.providers.tencent.receipts import TencentCallbacks
from notify.providers.tencent.send import TencentSms
from notify.providers.tencent.settings import build
from notify.providers.tencent.signing import (
    host_header,
    sha256_hex,
    tc3_authorization,
    tc3_canonical_request,
    tc3_date,
    tc3_signature,
    tc3_string_to_sign,
)

PLUGIN = ProviderPlugin(name="tencent", build=build, callbacks=TencentCallbacks())

__all__ = [
    "ACCOUNT_CODES",
    "ACCOUNT_WIDE_CODES",
    "CALL_CODES",
    "DAILY_QUOTA_CODES",
    "NUMBER_LIMIT_CODES",
    "PERMANENT_CODES",
    "PHONE_CODES",
    "PLUGIN",
    "TencentCallbacks",
    "TencentSms",
    "failure_kind",
    "host_header",
    "sha256_hex",
    "tc3_authorization",
    "tc3_canonical_request",
    "tc3_date",
    "tc3_signature",
    "tc3_string_to_sign",
]
