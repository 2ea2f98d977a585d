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

In this folder: ``send`` (the client), ``lookup`` (QuerySendDetails after a
crash), ``receipts`` (its pushes), ``settings`` (``HUIMIN_SMS_ALIYUN_*``), ``codes``
(error codes to failure kinds), ``signing`` (the RPC signature).
"""

from __future__ import annotations

from notify.providers.aliyun.codes import (
    ACCOUNT_CODES,
    ACCOUNT_WIDE_CODES,
    CALL_CODES,
    DAILY_QUOTA_CODES,
    PERMANENT_CODES,
    PHONE_CODES,
    failure_kind,
)
from notify.providers.aliyun.receipts import AliyunCallbacks
from notify.providers.aliyun.send import AliyunSms
from notify.providers.aliyun.settings import build
from notify.providers.aliyun.signing import (
    canonical_query,
    iso_timestamp,
    percent_encode,
    rpc_signature,
    rpc_string_to_sign,
)
from notify.providers.plugin import ProviderPlugin

PLUGIN = ProviderPlugin(name="aliyun", build=build, callbacks=AliyunCallbacks())

__all__ = [
    "ACCOUNT_CODES",
    "ACCOUNT_WIDE_CODES",
    "CALL_CODES",
    "DAILY_QUOTA_CODES",
    "PERMANENT_CODES",
    "PHONE_CODES",
    "PLUGIN",
    "AliyunCallbacks",
    "AliyunSms",
    "canonical_query",
    "failure_kind",
    "iso_timestamp",
    "percent_encode",
    "rpc_signature",
    "rpc_string_to_sign",
]
