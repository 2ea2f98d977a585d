"""A lean Tencent Cloud SMS stand-in for ``bench.notify``: fast, rate-capped, counting.

It speaks two actions of API 2021-01-11 on one endpoint, told apart by ``X-TC-Action``:

* ``SendSms`` the way ``tests.fakes.sms_servers.TencentFake`` does (same headers, same
  answer shapes), but built for hundreds of thousands of numbers: it checks the action,
  version, region, app id, template id and body shape of every call, and recomputes the
  TC3-HMAC-SHA256 signature (with the tests' independent implementation) on one call in
  ``verify_every`` (a bad signature is refused with ``AuthFailure.SignatureFailure`` and
  counted). It accepts at most ``rate`` numbers a second (a token bucket holding one
  second's worth): a call that would go over is refused as a whole with Tencent's own
  ``RequestLimitExceeded`` error, as the real service does.
* ``DescribeSendRecordList``, the send records of one number in a time range (newest
  first, ``Offset``/``Limit`` paging, at most 1,000 records), as the real API answers
  them: ``SerialNo`` as ``SendSms`` returned it, ``SendTime`` when the number was
  accepted, and ``Content`` as the person received it (the signature, then the template
  text with its parameters filled in, a parameter of four or more digits only masked
  with ``*`` as Tencent's privacy masking does). Every call's signature is checked, and
  at most ``describe_rate`` calls a second are answered (Tencent documents 10; over that:
  ``RequestLimitExceeded``).

It keeps, per phone, one small record per accepted number (serial, send time, an index
into the distinct texts sent): the benchmark gives every planned message its own phone,
so a phone accepted twice is a message sent twice. ``SessionContext`` is only checked
for its size; nothing depends on what it holds.

Send times and the range of ``DescribeSendRecordList`` are wall-clock unix seconds, as
a provider keeps them (whatever fixed clock the benchmark's workers run on).

Run it with :func:`serve` in its own process; ``GET /_bench/stats`` answers the counts
and ``GET /_bench/accepted`` the distinct texts and, per phone, the texts it was sent
(both JSON); ``GET /_bench/hold?after=N&seconds=S`` holds the answer to the call that
brings the accepted count to N (for a kill between a provider's acceptance and the
worker's record).
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import itertools
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.sms_servers import (
    TENCENT_APP_ID,
    TENCENT_REGIONS,
    TENCENT_SECRET_ID,
    TENCENT_SECRET_KEY,
    _tc3_expected,
)

_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z]+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$")
_E164 = re.compile(r"^\+861[3-9]\d{9}$")
_PLACEHOLDER = re.compile(r"\{(\d+)\}")
SEND_FIELDS = frozenset({"PhoneNumberSet", "SmsSdkAppId", "SignName", "TemplateId",
                         "TemplateParamSet", "SessionContext", "ExtendCode", "SenderId"})
DESCRIBE_FIELDS = frozenset({"PhoneNumber", "SmsSdkAppId", "BeginTime", "EndTime", "Limit",
                             "Offset"})
DESCRIBE_MAX_RECORDS = 1000  # Tencent: at most 1,000 records of one number are queried
SKEW = 300  # seconds a TC3 timestamp may be off


@dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` saved up (starts full)."""

    rate: float
    capacity: float
    tokens: float = 0.0
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    def take(self, count: int) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= count:
            self.tokens -= count
            return True
        return False


def privacy_masked(value: str) -> str:
    """A template parameter as a send record shows it: four or more digits (and nothing
    else) become as many ``*``, as Tencent masks codes and numbers."""
    if len(value) >= 4 and value.isascii() and value.isdigit():
        return "*" * len(value)
    return value


def fill_template(text: str, params: tuple[str, ...]) -> str:
    """``{1}``, ``{2}``, … of a Tencent template text replaced by the (masked) parameters."""
    def one(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        return privacy_masked(params[index]) if 0 <= index < len(params) else match.group(0)

    return _PLACEHOLDER.sub(one, text)


def placeholders(text: str) -> int:
    """How many parameters a template text takes (its highest ``{n}``)."""
    return max((int(n) for n in _PLACEHOLDER.findall(text)), default=0)


# (sign name, template id, parameters): one per distinct text sent
Text = tuple[str, str, tuple[str, ...]]
# One accepted number: serial number, send time (unix seconds) and the index of its text,
# packed into one int, and per phone one such int or (sent more than once) a tuple of
# them. Plain ints and tuples of ints are not tracked by the garbage collector: with
# hundreds of thousands of phones, a list or tuple per record made its collections (and so
# every call) measurably slower.
_TIME_BITS, _TEXT_BITS = 40, 24


def pack(serial: int, send_time: int, text: int) -> int:
    return (((serial << _TIME_BITS) | send_time) << _TEXT_BITS) | text


def unpack(record: int) -> tuple[int, int, int]:
    """(serial, send time, text index) of a packed record."""
    text = record & ((1 << _TEXT_BITS) - 1)
    rest = record >> _TEXT_BITS
    return rest >> _TIME_BITS, rest & ((1 << _TIME_BITS) - 1), text


def records_of(entry: int | tuple[int, ...] | None) -> tuple[int, ...]:
    if entry is None:
        return ()
    return entry if isinstance(entry, tuple) else (entry,)


@dataclass
class LeanTencent:
    """SendSms with a rate cap and compact bookkeeping, and DescribeSendRecordList."""

    rate: float
    verify_every: int = 10
    templates: Mapping[str, str] = field(default_factory=dict)  # TemplateId -> text
    describe_rate: float = 10.0  # DescribeSendRecordList calls a second (0: no cap)
    secret_id: str = TENCENT_SECRET_ID
    secret_key: str = TENCENT_SECRET_KEY
    app_id: str = TENCENT_APP_ID
    calls: int = 0  # SendSms calls (and requests for no known action)
    throttled_calls: int = 0
    throttled_numbers: int = 0
    verified: int = 0
    bad_signatures: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    first_accepted: float | None = None
    last_accepted: float | None = None
    sent: dict[str, int | tuple[int, ...]] = field(default_factory=dict)  # phone -> records
    texts: list[Text] = field(default_factory=list)
    describe_calls: int = 0
    describe_throttled: int = 0
    describe_errors: Counter[str] = field(default_factory=Counter)
    describe_records: int = 0  # records answered (after paging)
    describe_found: int = 0  # calls that found at least one record
    sent_twice: int = 0  # phones accepted more than once
    extra_sends: int = 0  # acceptances beyond a phone's first
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (when, accepted so far)
    hold_after: int | None = None  # the call that brings `accepted` to this is held …
    hold_seconds: float = 0.0  # … this long before it is answered (once)
    held_calls: int = 0

    def __post_init__(self) -> None:
        self.bucket = TokenBucket(self.rate, max(1.0, self.rate))
        self.describe_bucket = (TokenBucket(self.describe_rate, max(1.0, self.describe_rate))
                                if self.describe_rate > 0 else None)
        self._serial = itertools.count(1)
        self._text_index: dict[Text, int] = {}
        self._arity = {tid: placeholders(text) for tid, text in self.templates.items()}

    @staticmethod
    def now() -> float:
        return time.time()

    # ----- answers ------------------------------------------------------------------
    @staticmethod
    def _error(code: str, message: str) -> web.Response:
        return web.json_response({"Response": {"Error": {"Code": code, "Message": message},
                                               "RequestId": str(uuid.uuid4())}})

    def _problem(self, code: str, message: str) -> web.Response:
        self.problems[code] += 1
        return self._error(code, message)

    # ----- the endpoint -------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = request.headers
        action = headers.get("X-TC-Action")
        if action == "DescribeSendRecordList":
            return self._describe(request, raw)
        self.calls += 1
        if request.method != "POST" or request.path != "/":
            return self._problem("InvalidParameter", "expected POST /")
        if action != "SendSms" or headers.get("X-TC-Version") != \
                "2021-01-11" or headers.get("X-TC-Region") not in TENCENT_REGIONS:
            return self._problem("InvalidAction", "action, version or region not SendSms "
                                 "2021-01-11 in a supported region")
        timestamp = headers.get("X-TC-Timestamp", "")
        auth = _AUTH.match(headers.get("Authorization", ""))
        if not timestamp.isdigit() or auth is None or auth["id"] != self.secret_id:
            return self._problem("AuthFailure.InvalidAuthorization",
                                 "Authorization or X-TC-Timestamp missing or malformed")
        if self.calls % self.verify_every == 0:
            if not self._signature_ok(request, raw, timestamp, auth):
                self.bad_signatures += 1
                return self._error("AuthFailure.SignatureFailure",
                                   "The provided credentials could not be validated.")
            self.verified += 1
        try:
            body = json.loads(raw)
        except ValueError:
            return self._problem("FailedOperation.JsonParseFail", "the body is not JSON")
        if not isinstance(body, dict):
            return self._problem("FailedOperation.JsonParseFail", "the body is not an object")
        unknown = body.keys() - SEND_FIELDS
        if unknown:
            return self._problem("UnknownParameter", f"unknown parameters {sorted(unknown)}")
        phones = body.get("PhoneNumberSet")
        if not isinstance(phones, list) or not 1 <= len(phones) <= 200:
            return self._problem("InvalidParameter", "PhoneNumberSet must hold 1 to 200 numbers")
        if body.get("SmsSdkAppId") != self.app_id:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail",
                               "SmsSdkAppId verify fail")
        sign, template_id = body.get("SignName"), body.get("TemplateId")
        params = body.get("TemplateParamSet", [])
        if not isinstance(sign, str) or not sign or not isinstance(template_id, str) or \
                not template_id or not isinstance(params, list) or \
                not all(isinstance(p, str) for p in params):
            return self._problem("MissingParameter", "SignName, TemplateId, TemplateParamSet")
        if self._arity:
            arity = self._arity.get(template_id)
            if arity is None:
                return self._problem("FailedOperation.TemplateIncorrectOrUnapproved",
                                     f"template {template_id} unknown or not approved")
            if len(params) != arity:
                return self._problem("InvalidParameterValue.TemplateParameterFormatError",
                                     f"template {template_id} takes {arity} parameters, "
                                     f"got {len(params)}")
        context = body.get("SessionContext", "")
        if not isinstance(context, str) or len(context.encode("utf-8")) >= 512:
            return self._problem("InvalidParameter", "SessionContext must be under 512 bytes")
        if not self.bucket.take(len(phones)):
            self.throttled_calls += 1
            self.throttled_numbers += len(phones)
            return self._error("RequestLimitExceeded",
                               "请求的次数超过了频率限制。 (over the configured rate)")
        text: Text = (sign, template_id, tuple(params))
        index = self._text_index.get(text)
        if index is None:
            index = self._text_index[text] = len(self.texts)
            self.texts.append(text)
        now = time.monotonic()
        send_time = int(self.now())
        statuses = []
        sent, serials, valid = self.sent, self._serial, _E164.match
        taken = 0
        for phone in phones:
            if isinstance(phone, str) and valid(phone):
                number = next(serials)
                record = pack(number, send_time, index)
                known = sent.get(phone)
                if known is None:
                    sent[phone] = record
                else:
                    self.extra_sends += 1
                    if isinstance(known, tuple):
                        sent[phone] = (*known, record)
                    else:
                        sent[phone] = (known, record)
                        self.sent_twice += 1
                taken += 1
                statuses.append({
                    "SerialNo": f"2433:{number:012d}", "PhoneNumber": phone, "Fee": 1,
                    "SessionContext": context, "Code": "Ok", "Message": "send success",
                    "IsoCode": "CN"})
            else:
                statuses.append({
                    "SerialNo": "", "PhoneNumber": phone, "Fee": 0, "SessionContext": context,
                    "Code": "InvalidParameterValue.IncorrectPhoneNumber",
                    "Message": "incorrect phone number", "IsoCode": "CN"})
        if taken:
            self.accepted += taken
            if self.first_accepted is None:
                self.first_accepted = now
            self.last_accepted = now
            self.timeline.append((now, self.accepted))
            if self.hold_after is not None and self.accepted >= self.hold_after:
                self.hold_after = None
                self.held_calls += 1
                await asyncio.sleep(self.hold_seconds)  # accepted, not yet answered
        return web.json_response({"Response": {"SendStatusSet": statuses,
                                               "RequestId": str(uuid.uuid4())}})

    # ----- DescribeSendRecordList -------------------------------------------------------
    def _describe_error(self, code: str, message: str) -> web.Response:
        self.describe_errors[code] += 1
        return self._error(code, message)

    def _describe(self, request: web.Request, raw: bytes) -> web.Response:
        self.describe_calls += 1
        headers = request.headers
        if request.method != "POST" or request.path != "/":
            return self._describe_error("InvalidParameter", "expected POST /")
        if headers.get("X-TC-Version") != "2021-01-11" or \
                headers.get("X-TC-Region") not in TENCENT_REGIONS:
            return self._describe_error("InvalidAction", "version or region not 2021-01-11 "
                                        "in a supported region")
        timestamp = headers.get("X-TC-Timestamp", "")
        auth = _AUTH.match(headers.get("Authorization", ""))
        if not timestamp.isdigit() or auth is None or auth["id"] != self.secret_id:
            return self._describe_error("AuthFailure.InvalidAuthorization",
                                        "Authorization or X-TC-Timestamp missing or malformed")
        if not self._signature_ok(request, raw, timestamp, auth):
            self.bad_signatures += 1
            return self._describe_error("AuthFailure.SignatureFailure",
                                        "The provided credentials could not be validated.")
        self.verified += 1
        if self.describe_bucket is not None and not self.describe_bucket.take(1):
            self.describe_throttled += 1
            return self._error("RequestLimitExceeded",
                               "请求的次数超过了频率限制。 (DescribeSendRecordList: "
                               f"{self.describe_rate:g} calls a second)")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._describe_error("FailedOperation.JsonParseFail", "the body is not JSON")
        if not isinstance(body, dict):
            return self._describe_error("InvalidParameter", "the body is not a JSON object")
        unknown = body.keys() - DESCRIBE_FIELDS
        if unknown:
            return self._describe_error("UnknownParameter",
                                        f"unknown parameters {sorted(unknown)}")
        for name in ("PhoneNumber", "SmsSdkAppId", "BeginTime"):
            if body.get(name) is None:
                return self._describe_error("MissingParameter", f"{name} is required")
        phone, app_id = body["PhoneNumber"], body["SmsSdkAppId"]
        if not isinstance(phone, str) or not phone.startswith("+") or not phone[1:].isdigit():
            return self._describe_error("InvalidParameter",
                                        "PhoneNumber must be E.164, like +8613800138000")
        if not isinstance(app_id, str) or not app_id:
            return self._describe_error("InvalidParameter", "SmsSdkAppId must be a string")
        if app_id != self.app_id:
            return self._describe_error("UnauthorizedOperation.SmsSdkAppIdVerifyFail",
                                        "SmsSdkAppId verify fail")
        now = int(self.now())
        values = {}
        for name, default, low, high in (("BeginTime", None, 0, None),
                                         ("EndTime", now, 0, None),
                                         ("Limit", 20, 1, 50), ("Offset", 0, 0, 1000)):
            value = body.get(name, default)
            if value is None:
                value = default
            if not isinstance(value, int) or isinstance(value, bool) or value < low or (
                    high is not None and value > high):
                bounds = f" in [{low}, {high}]" if high is not None else " (unix seconds)"
                return self._describe_error("InvalidParameter",
                                            f"{name} must be an integer{bounds}")
            values[name] = value
        if values["BeginTime"] > values["EndTime"]:
            return self._describe_error("InvalidParameter", "BeginTime is after EndTime")
        begin, end = values["BeginTime"], values["EndTime"]
        found = [r for r in map(unpack, records_of(self.sent.get(phone)))
                 if begin <= r[1] <= end]
        found.sort(key=lambda r: (r[1], r[0]), reverse=True)  # newest first
        found = found[:DESCRIBE_MAX_RECORDS]
        page = found[values["Offset"]:values["Offset"] + values["Limit"]]
        self.describe_records += len(page)
        self.describe_found += bool(found)
        records = []
        for serial, send_time, index in page:
            sign, template_id, params = self.texts[index]
            template = self.templates.get(template_id)
            body_text = fill_template(template, params) if template is not None else ""
            records.append({
                "PhoneNumber": phone, "SerialNo": f"2433:{serial:012d}", "SendStatus": 3,
                "RequestCode": "Ok", "StatusCode": "", "IsoCode": "CN",
                "Content": f"【{sign}】{body_text}", "SendTime": send_time,
                "UserReceiveTime": 0})
        return web.json_response({"Response": {"SendRecordSet": records,
                                               "TotalCount": len(found),
                                               "RequestId": str(uuid.uuid4())}})

    def _signature_ok(self, request: web.Request, raw: bytes, timestamp: str,
                      auth: re.Match[str]) -> bool:
        if abs(self.now() - int(timestamp)) > SKEW:
            return False
        utc_date = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d")
        signed = auth["signed"].split(";")
        if auth["date"] != utc_date or auth["service"] != "sms" or signed != sorted(signed) \
                or not {"content-type", "host"} <= set(signed):
            return False
        headers = {k.lower(): v for k, v in request.headers.items()}
        expected = _tc3_expected(self.secret_key, method=request.method, path=request.path,
                                 query=request.query_string, headers=headers, signed=signed,
                                 body=raw, timestamp=timestamp, date=auth["date"],
                                 service=auth["service"])
        return hmac.compare_digest(expected, auth["signature"])

    # ----- for the benchmark ------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        span = ((self.last_accepted or 0.0) - (self.first_accepted or 0.0))
        return {"calls": self.calls, "accepted": self.accepted,
                "distinct_phones": len(self.sent), "distinct_texts": len(self.texts),
                "sent_twice": self.sent_twice, "extra_sends": self.extra_sends,
                "throttled_calls": self.throttled_calls,
                "throttled_numbers": self.throttled_numbers,
                "verified": self.verified, "bad_signatures": self.bad_signatures,
                "problems": dict(self.problems), "accept_span": span, "rate": self.rate,
                "steady_rate": self.steady_rate(),
                "describe_calls": self.describe_calls,
                "describe_throttled": self.describe_throttled,
                "describe_errors": dict(self.describe_errors),
                "describe_records": self.describe_records,
                "describe_found": self.describe_found, "held_calls": self.held_calls}

    def steady_rate(self, skip: float = 1.0) -> float:
        """Numbers accepted a second after the first ``skip`` seconds of acceptances: both
        token buckets (the worker's and this one) start full, so the first second can
        take up to twice the rate; a short run's overall rate overstates the steady one.
        0.0 when the acceptances span less than ``2 * skip``."""
        if not self.timeline or self.timeline[-1][0] - self.timeline[0][0] < 2 * skip:
            return 0.0
        start = self.timeline[0][0] + skip
        index = bisect.bisect_left(self.timeline, (start, -1))
        since, before = self.timeline[index - 1]
        last, total = self.timeline[-1]
        return (total - before) / (last - since) if last > since else 0.0

    def accepted_view_data(self) -> dict[str, Any]:
        """The distinct texts as [template id, [parameters]], and per phone the indexes
        of the texts it was sent, one per acceptance, oldest first."""
        return {"texts": [[template_id, list(params)] for _, template_id, params in self.texts],
                "phones": [[phone, [unpack(r)[2] for r in records_of(entry)]]
                           for phone, entry in self.sent.items()]}

    async def stats_view(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def hold_view(self, request: web.Request) -> web.Response:
        """``?after=N&seconds=S``: hold the answer to the call that brings the accepted
        count to N for S seconds (once), so that a worker can be killed while a call it
        made was accepted but not answered."""
        self.hold_after = int(request.query["after"])
        self.hold_seconds = float(request.query["seconds"])
        return web.json_response({"after": self.hold_after, "seconds": self.hold_seconds})

    async def accepted_view(self, _request: web.Request) -> web.Response:
        return web.json_response(self.accepted_view_data())


def build_app(fake: LeanTencent) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get("/_bench/stats", fake.stats_view)
    app.router.add_get("/_bench/accepted", fake.accepted_view)
    app.router.add_get("/_bench/hold", fake.hold_view)
    app.router.add_post("/", fake.handle)
    return app


async def _serve(fake: LeanTencent, ready: Any, stop: Any) -> None:
    runner = web.AppRunner(build_app(fake), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        ready.put(("ok", runner.addresses[0][1]))
        while not stop.is_set():
            await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()


def serve(rate: float, verify_every: int, ready: Any, stop: Any,
          templates: Mapping[str, str] | None = None, describe_rate: float = 10.0) -> None:
    """Entry point of the fake's process: serve on a free port until ``stop`` is set.
    ``templates`` maps Tencent template ids to their texts (``{1}``, ``{2}``, …)."""
    logging.basicConfig(level=logging.WARNING,
                        format="[tencent fake] %(levelname)s %(name)s: %(message)s")
    fake = LeanTencent(rate=rate, verify_every=max(1, verify_every),
                       templates=dict(templates or {}), describe_rate=describe_rate)
    try:
        asyncio.run(_serve(fake, ready, stop))
    except BaseException as exc:
        ready.put(("error", repr(exc)))
        raise
