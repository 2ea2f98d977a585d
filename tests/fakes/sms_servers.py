"""Local stand-ins for Tencent Cloud SMS and Alibaba Cloud SMS, strict about what they get.

Both check every request the way the real services document it, with their own
signature code (written from the providers' documentation, independent of
``notify.providers``), record it, and answer in the real shapes.

:class:`TencentFake` (``sms.tencentcloudapi.com``, SendSms 2021-01-11):

* recomputes the TC3-HMAC-SHA256 signature from the request as received
  (method, path, query, the signed headers, the body) and answers
  ``{"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", ...}}}``
  when it differs; also checks the credential scope, ``X-TC-Action``,
  ``X-TC-Version``, ``X-TC-Region`` and that ``X-TC-Timestamp`` is within 5 minutes;
* checks the body (``PhoneNumberSet`` of 1 to 200 E.164 numbers, ``SmsSdkAppId``,
  ``SignName``, ``TemplateId``, ``TemplateParamSet`` of strings, ``SessionContext``
  under 512 bytes);
* answers each number from :attr:`TencentFake.codes` (number -> Code, default "Ok")
  in ``SendStatusSet``;
* with :attr:`TencentFake.daily_limit` set, accepts that many numbers in all and
  answers every later number ``LimitExceeded.AppDailyLimit`` (the app's daily limit
  set in the console is spent; ``0``: spent already);
* answers ``DescribeSendRecordList`` (one number's send records between
  ``BeginTime`` and ``EndTime``, newest first, ``Limit`` / ``Offset``) from what it
  accepted, with the content a person received (template text from
  :attr:`TencentFake.template_texts`, ``{1}``, ``{2}`` … filled in) stored the way
  Tencent stores it: parameters of four or more digits masked as ``*``.

:class:`AliyunFake` (``dysmsapi.aliyuncs.com``, SendSms 2017-05-25):

* recomputes the RPC HMAC-SHA1 signature over the parameters of the query
  string and of a form body, answering HTTP 400 ``SignatureDoesNotMatch`` when it
  differs and HTTP 404 ``InvalidAccessKeyId.NotFound`` for an unknown key; checks
  the common parameters, the timestamp (15 minutes) and that no
  ``SignatureNonce`` is used twice;
* answers the call from :attr:`AliyunFake.codes`: the first number (in
  ``PhoneNumbers`` order) with a code other than "OK" decides the whole call, as
  Aliyun answers a call as a whole;
* with :attr:`AliyunFake.daily_limit` set, answers ``isv.DAY_LIMIT_CONTROL`` to a
  call that would take the numbers accepted past it (``0``: spent already);
* answers ``QuerySendDetails`` (one number's messages of one ``SendDate``, China
  time, paged) from what it accepted, each with its ``OutId`` and ``TemplateCode``.

Both can be told to fail whole calls with :meth:`fail` (an HTTP status, an
error code, a body that is not JSON, or a delay), optionally after some normal
calls. Anything that breaks the documented request shape is also noted in
``problems``, which tests assert to be empty.

Usage::

    tencent = TencentFake()
    endpoint = await tencent.start(aiohttp_server)
    tencent.codes["13800138000"] = "FailedOperation.PhoneNumberInBlacklist"
    tencent.fail(2, code="RequestLimitExceeded")
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

TENCENT_SECRET_ID = "AKIDhuiminTestSecretIdForTheFakeOnly00"
TENCENT_SECRET_KEY = "huiminTestSecretKeyFakeOnly00000"
TENCENT_APP_ID = "1400000001"
TENCENT_REGIONS = frozenset({"ap-guangzhou", "ap-beijing", "ap-nanjing"})
ALIYUN_ACCESS_KEY_ID = "LTAI5tHuiminTestKeyFakeOnly"
ALIYUN_ACCESS_KEY_SECRET = "huiminTestAccessKeySecretFake0"

_TC3_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z]+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_CN_MOBILE = re.compile(r"^(?:\+?86|0086)?(1\d{10})$")
_TENCENT_FIELDS = {"PhoneNumberSet", "SmsSdkAppId", "SignName", "TemplateId", "TemplateParamSet",
                   "SessionContext", "ExtendCode", "SenderId"}
_TENCENT_LOOKUP_FIELDS = {"PhoneNumber", "SmsSdkAppId", "BeginTime", "EndTime", "Limit", "Offset"}
_CHINA = ZoneInfo("Asia/Shanghai")
_ALIYUN_COMMON = ("AccessKeyId", "Action", "Format", "SignatureMethod", "SignatureNonce",
                  "SignatureVersion", "Timestamp", "Version", "Signature")
_ALIYUN_FIELDS = set(_ALIYUN_COMMON) | {"PhoneNumbers", "SignName", "TemplateCode",
                                        "TemplateParam", "OutId", "SmsUpExtendCode", "RegionId"}
_ALIYUN_LOOKUP_FIELDS = set(_ALIYUN_COMMON) | {"PhoneNumber", "SendDate", "PageSize",
                                               "CurrentPage", "BizId", "RegionId"}
TENCENT_MESSAGES = {
    "Ok": "send success",
    "InvalidParameterValue.IncorrectPhoneNumber": "incorrect phone number",
    "FailedOperation.PhoneNumberInBlacklist": "phone number in blacklist",
    "FailedOperation.PhoneNumberOnBlacklist": "phone number on blacklist",
    "LimitExceeded.PhoneNumberDailyLimit": "phone number daily limit exceeded",
    "FailedOperation.InsufficientBalanceInSmsPackage": "insufficient balance in SMS package",
    "LimitExceeded.AppDailyLimit": "the number of SMS messages sent from the app per day "
                                   "exceeds the upper limit",
}
ALIYUN_MESSAGES = {
    "OK": "OK",
    "isv.MOBILE_NUMBER_ILLEGAL": "非法手机号",
    "isv.BUSINESS_LIMIT_CONTROL": "触发号码天级流控Permits:10",
    "isv.AMOUNT_NOT_ENOUGH": "账户余额不足",
    "isv.SMS_TEMPLATE_ILLEGAL": "模板不合法(不存在或被拉黑)",
    "isv.SMS_SIGNATURE_ILLEGAL": "签名不合法(不存在或被拉黑)",
    "isv.DAY_LIMIT_CONTROL": "触发日发送限额",
}


@dataclass
class Failure:
    """How one upcoming call fails (instead of being answered normally)."""

    status: int = 200
    code: str | None = None
    message: str = ""
    raw: bytes | None = None
    delay: float = 0.0


@dataclass
class TencentCall:
    headers: dict[str, str]
    body: Any  # the parsed JSON (None when not JSON)
    signature_valid: bool = False
    status: int = 200
    answer: Any = None


@dataclass
class AliyunCall:
    method: str
    params: dict[str, str]
    signature_valid: bool = False
    status: int = 200
    answer: Any = None


@dataclass
class _FakeBase:
    calls: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    script: list[Failure | None] = field(default_factory=list)
    base_url: str = ""

    def fail(self, times: int = 1, *, after: int = 0, status: int | None = None,
             code: str | None = None, message: str = "", raw: bytes | None = None,
             delay: float = 0.0) -> None:
        """Make ``times`` calls fail, after ``after`` calls answered normally.

        ``status`` alone: an HTTP error page; ``code``: the service's error shape
        (HTTP 200 unless ``status`` says otherwise); ``raw``: that body as is;
        ``delay``: seconds before answering (for timeouts).
        """
        default_status = 200 if code is not None or raw is not None else 500
        failure = Failure(status=status if status is not None else default_status, code=code,
                          message=message, raw=raw, delay=delay)
        queued = list(self.script)
        queued += [None] * max(0, after - len(queued))
        queued[after:after] = [failure] * times
        self.script = queued

    def _next_failure(self) -> Failure | None:
        return self.script.pop(0) if self.script else None

    async def start(self, aiohttp_server: Any) -> str:
        """Serve on a local port; returns the base URL (the provider's endpoint)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)  # type: ignore[attr-defined]
        # No access log: it would print the query strings (Aliyun's carry the numbers)
        # into the test's log records, which the tests check for clear numbers.
        server = await aiohttp_server(app, access_log=None)
        self.base_url = str(server.make_url("")).rstrip("/")
        return self.base_url

    async def _failed(self, failure: Failure) -> web.Response:
        if failure.delay:
            await asyncio.sleep(failure.delay)
        if failure.raw is not None:
            return web.Response(body=failure.raw, status=failure.status,
                                content_type="text/html")
        if failure.code is None:
            return web.Response(text="<html><body>502 Bad Gateway</body></html>",
                                status=failure.status, content_type="text/html")
        return self._error(failure.code, failure.message or failure.code, failure.status)

    def _error(self, code: str, message: str, status: int = 200) -> web.Response:
        raise NotImplementedError


# --- Tencent ---------------------------------------------------------------------------------


def _tc3_expected(secret_key: str, *, method: str, path: str, query: str,
                  headers: dict[str, str], signed: list[str], body: bytes, timestamp: str,
                  date: str, service: str) -> str:
    """The signature Tencent would compute, following the documented steps one by one."""
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip().lower()}\n"
                                for name in signed)
    canonical_request = (method + "\n" + path + "\n" + query + "\n" + canonical_headers + "\n"
                         + ";".join(signed) + "\n" + hashlib.sha256(body).hexdigest())
    string_to_sign = ("TC3-HMAC-SHA256\n" + timestamp + "\n" + f"{date}/{service}/tc3_request\n"
                      + hashlib.sha256(canonical_request.encode("utf-8")).hexdigest())
    key = ("TC3" + secret_key).encode("utf-8")
    for part in (date, service, "tc3_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class TencentFake(_FakeBase):
    """Tencent Cloud SMS. State is plain attributes, read and set by tests."""

    secret_id: str = TENCENT_SECRET_ID
    secret_key: str = TENCENT_SECRET_KEY
    app_id: str = TENCENT_APP_ID
    codes: dict[str, str] = field(default_factory=dict)  # number (11 digits or +86...) -> Code
    delivered: list[dict[str, Any]] = field(default_factory=list)  # one per "Ok" number
    max_skew: float = 300.0
    reverse_statuses: bool = False  # answer SendStatusSet in reverse order (no order promised)
    template_texts: dict[str, str] = field(default_factory=dict)  # TemplateId -> "…{1}…"
    daily_limit: int | None = None  # numbers accepted in all before AppDailyLimit

    @property
    def send_calls(self) -> list[TencentCall]:
        """The SendSms calls received (lookups left out)."""
        return [c for c in self.calls if c.headers.get("x-tc-action") == "SendSms"]

    def __post_init__(self) -> None:
        self._serial = itertools.count(1)

    def _error(self, code: str, message: str, status: int = 200) -> web.Response:
        answer = {"Response": {"Error": {"Code": code, "Message": message},
                               "RequestId": str(uuid.uuid4())}}
        if self.calls:
            self.calls[-1].answer = answer
            self.calls[-1].status = status
        return web.json_response(answer, status=status)

    def _problem(self, code: str, message: str) -> web.Response:
        self.problems.append(f"{code}: {message}")
        return self._error(code, message)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        call = TencentCall(headers=headers, body=body)
        self.calls.append(call)
        failure = self._next_failure()
        if failure is not None:
            call.status = failure.status
            return await self._failed(failure)
        if request.method != "POST" or request.path != "/":
            return self._problem("InvalidParameter", f"expected POST /, got {request.method} "
                                 f"{request.path}")
        if not headers.get("content-type", "").startswith("application/json"):
            return self._problem("InvalidParameter", "Content-Type must be application/json")
        action = headers.get("x-tc-action", "")
        if action not in {"SendSms", "DescribeSendRecordList"}:
            return self._problem("InvalidAction", f"The requested action `{action}` does not "
                                 "exist")
        if headers.get("x-tc-version") != "2021-01-11":
            return self._problem("NoSuchVersion", "The requested version "
                                 f"`{headers.get('x-tc-version')}` of action `{action}` does "
                                 "not exist")
        if headers.get("x-tc-region") not in TENCENT_REGIONS:
            return self._problem("UnsupportedRegion", "The requested region "
                                 f"`{headers.get('x-tc-region')}` is not supported")
        timestamp = headers.get("x-tc-timestamp", "")
        if not timestamp.isdigit():
            return self._problem("MissingParameter", "X-TC-Timestamp is missing or not a number")
        if abs(time.time() - int(timestamp)) > self.max_skew:
            return self._problem("AuthFailure.SignatureExpire",
                                 "Signature expired. Timestamp date has expired.")
        auth = _TC3_AUTH.match(headers.get("authorization", ""))
        if auth is None:
            return self._problem("AuthFailure.InvalidAuthorization",
                                 "Authorization header is not TC3-HMAC-SHA256 of the right form")
        if auth["id"] != self.secret_id:
            return self._error("AuthFailure.SecretIdNotFound",
                               "The SecretId is not found, please ensure that your SecretId "
                               "is correct.")
        utc_date = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d")
        signed = auth["signed"].split(";")
        if (auth["date"] != utc_date or auth["service"] != "sms"
                or not {"content-type", "host"} <= set(signed) or signed != sorted(signed)):
            return self._problem("AuthFailure.SignatureFailure",
                                 "credential scope or signed headers do not match the request")
        expected = _tc3_expected(self.secret_key, method=request.method, path=request.path,
                                 query=request.query_string, headers=headers, signed=signed,
                                 body=raw, timestamp=timestamp, date=auth["date"],
                                 service=auth["service"])
        if not hmac.compare_digest(expected, auth["signature"]):
            return self._error("AuthFailure.SignatureFailure",
                               "The provided credentials could not be validated. Please check "
                               "your signature is correct.")
        call.signature_valid = True
        if action == "DescribeSendRecordList":
            return self._send_records(call)
        return self._send_sms(call)

    def content(self, sign: str, template_id: str, params: list[str]) -> str:
        """What the person received, as Tencent stores it (long digit runs masked)."""
        text = self.template_texts.get(template_id, "")
        for i, value in enumerate(params, start=1):
            stored = "*" * len(value) if value.isdigit() and len(value) >= 4 else value
            text = text.replace(f"{{{i}}}", stored)
        return f"【{sign}】{text}"

    def _send_records(self, call: TencentCall) -> web.Response:
        body = call.body
        if not isinstance(body, dict):
            return self._problem("FailedOperation.JsonParseFail", "the body is not a JSON object")
        unknown = set(body) - _TENCENT_LOOKUP_FIELDS
        if unknown:
            self.problems.append(f"unknown fields {sorted(unknown)}")
        phone, begin = body.get("PhoneNumber"), body.get("BeginTime")
        if not isinstance(phone, str) or not _E164.match(phone):
            return self._problem("InvalidParameterValue.IncorrectPhoneNumber",
                                 "PhoneNumber must be E.164, like +8613800138000")
        if body.get("SmsSdkAppId") != self.app_id:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail",
                               "SmsSdkAppId verify fail")
        now = int(time.time())
        end = body.get("EndTime", now)
        limit, offset = body.get("Limit", 20), body.get("Offset", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool)
                   for v in (begin, end, limit, offset)):
            return self._problem("InvalidParameter", "BeginTime, EndTime, Limit and Offset "
                                 "must be integers")
        if not 1 <= limit <= 50 or not 0 <= offset <= 1000:
            return self._problem("InvalidParameterValue", "Limit is 1 to 50, Offset 0 to 1000")
        if end > now or begin < now - 72 * 3600 or begin > end:
            return self._problem("InvalidParameterValue.TimeRange",
                                 "BeginTime within the last 72 hours, EndTime not in the future")
        records = [d for d in self.delivered
                   if d["phone"] == phone and begin <= d["time"] <= end]
        records.sort(key=lambda d: d["time"], reverse=True)
        page = records[offset:offset + limit]
        answer = {"Response": {"SendRecordSet": [{
            "PhoneNumber": d["phone"], "SerialNo": d["serial"], "SendStatus": 3,
            "RequestCode": "Ok", "StatusCode": "", "IsoCode": "CN",
            "Content": self.content(d["sign"], d["template"], d["params"]),
            "SendTime": d["time"], "UserReceiveTime": 0} for d in page],
            "TotalCount": len(records), "RequestId": str(uuid.uuid4())}}
        call.answer = answer
        return web.json_response(answer)

    def _send_sms(self, call: TencentCall) -> web.Response:
        body = call.body
        if not isinstance(body, dict):
            return self._problem("FailedOperation.JsonParseFail", "the body is not a JSON object")
        unknown = set(body) - _TENCENT_FIELDS
        if unknown:
            self.problems.append(f"unknown fields {sorted(unknown)}")
        for name in ("SmsSdkAppId", "SignName", "TemplateId"):
            if not isinstance(body.get(name), str) or not body[name]:
                return self._problem("MissingParameter", f"{name} must be a non-empty string")
        if body["SmsSdkAppId"] != self.app_id:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail",
                               "SmsSdkAppId verify fail")
        phones = body.get("PhoneNumberSet")
        if not isinstance(phones, list) or not phones:
            return self._problem("MissingParameter.EmptyPhoneNumberSet",
                                 "PhoneNumberSet must be a non-empty list")
        if len(phones) > 200:
            return self._problem("LimitExceeded.PhoneNumberCountLimit",
                                 "more than 200 numbers in one call")
        if not all(isinstance(p, str) for p in phones):
            return self._problem("InvalidParameter", "PhoneNumberSet must hold strings")
        if len(set(phones)) != len(phones):
            self.problems.append("the same number twice in one PhoneNumberSet")
        domestic = {p.startswith("+86") for p in phones}
        if len(domestic) > 1:
            return self._error("UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
                               "domestic and international numbers in one call")
        params = body.get("TemplateParamSet", [])
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return self._problem("InvalidParameter", "TemplateParamSet must be a list of strings")
        context = body.get("SessionContext", "")
        if not isinstance(context, str) or len(context.encode("utf-8")) >= 512:
            return self._problem("InvalidParameter", "SessionContext must be under 512 bytes")
        statuses = []
        for phone in phones:
            bare = phone[3:] if phone.startswith("+86") else phone
            code = self.codes.get(phone) or self.codes.get(bare) or "Ok"
            if not _E164.match(phone):
                code = "InvalidParameterValue.IncorrectPhoneNumber"
            elif self.daily_limit is not None and len(self.delivered) >= self.daily_limit:
                code = "LimitExceeded.AppDailyLimit"
            ok = code == "Ok"
            serial = f"2433:{next(self._serial):012d}" if ok else ""
            statuses.append({
                "SerialNo": serial,
                "PhoneNumber": phone,
                "Fee": 1 if ok else 0,
                "SessionContext": context,
                "Code": code,
                "Message": TENCENT_MESSAGES.get(code, code),
                "IsoCode": "CN" if phone.startswith("+86") else "DEF",
            })
            if ok:
                self.delivered.append({"phone": phone, "template": body["TemplateId"],
                                       "params": params, "sign": body["SignName"],
                                       "context": context, "serial": serial,
                                       "time": int(time.time())})
        if self.reverse_statuses:
            statuses.reverse()
        answer = {"Response": {"SendStatusSet": statuses, "RequestId": str(uuid.uuid4())}}
        call.answer = answer
        return web.json_response(answer)


# --- Aliyun ----------------------------------------------------------------------------------


def _pop_encode(text: str) -> str:
    """Aliyun's documented recipe: form-encode, then '+' -> %20, '*' -> %2A, %7E -> '~'."""
    return text.replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def _aliyun_expected(method: str, params: dict[str, str], secret: str) -> tuple[str, str]:
    """(string to sign, signature) the way the gateway computes them."""
    ordered = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = _pop_encode(urlencode(ordered))
    to_sign = method + "&" + _pop_encode(quote_plus("/")) + "&" + _pop_encode(
        quote_plus(canonical))
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode("utf-8"), hashlib.sha1).digest()
    return to_sign, base64.b64encode(digest).decode()


@dataclass
class AliyunFake(_FakeBase):
    """Alibaba Cloud SMS (Dysmsapi). State is plain attributes, read and set by tests."""

    access_key_id: str = ALIYUN_ACCESS_KEY_ID
    access_key_secret: str = ALIYUN_ACCESS_KEY_SECRET
    codes: dict[str, str] = field(default_factory=dict)  # number (11 digits) -> Code
    delivered: list[dict[str, Any]] = field(default_factory=list)  # one per accepted number
    max_skew: float = 900.0
    template_texts: dict[str, str] = field(default_factory=dict)  # TemplateCode -> "…${name}…"
    daily_limit: int | None = None  # numbers accepted in all before DAY_LIMIT_CONTROL

    @property
    def send_calls(self) -> list[AliyunCall]:
        """The SendSms calls received (lookups left out)."""
        return [c for c in self.calls if c.params.get("Action") == "SendSms"]

    def __post_init__(self) -> None:
        self._nonces: set[str] = set()
        self._biz = itertools.count(900_619_000_000_000)

    def _error(self, code: str, message: str, status: int = 200) -> web.Response:
        answer = {"RequestId": str(uuid.uuid4()).upper(), "Code": code, "Message": message}
        if status != 200:
            answer.update(HostId="dysmsapi.aliyuncs.com",
                          Recommend="https://api.aliyun.com/troubleshoot?q=" + code)
        if self.calls:
            self.calls[-1].answer = answer
            self.calls[-1].status = status
        return web.json_response(answer, status=status)

    def _problem(self, code: str, message: str, status: int = 400) -> web.Response:
        self.problems.append(f"{code}: {message}")
        return self._error(code, message, status)

    async def handle(self, request: web.Request) -> web.Response:
        params: dict[str, str] = {}
        pairs = list(request.query.items())
        if request.method == "POST" and request.content_type == \
                "application/x-www-form-urlencoded":
            pairs += list((await request.post()).items())  # type: ignore[arg-type]
        for key, value in pairs:
            if key in params:
                self.problems.append(f"parameter {key} given twice")
            params[key] = str(value)
        call = AliyunCall(method=request.method, params=params)
        self.calls.append(call)
        failure = self._next_failure()
        if failure is not None:
            call.status = failure.status
            return await self._failed(failure)
        if request.method not in {"GET", "POST"} or request.path != "/":
            return self._problem("InvalidParameter", f"{request.method} {request.path}")
        for name in _ALIYUN_COMMON:
            if not params.get(name):
                return self._problem(f"Missing{name}", f"{name} is mandatory for this action.")
        if params["AccessKeyId"] != self.access_key_id:
            return self._error("InvalidAccessKeyId.NotFound", "Specified access key is not found.",
                               404)
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            return self._problem("InvalidParameter", "SignatureMethod must be HMAC-SHA1, "
                                 "SignatureVersion 1.0")
        try:
            stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return self._problem("InvalidTimeStamp.Format", "Specified time stamp or date value "
                                 "is not well formatted.")
        if abs(time.time() - stamp.timestamp()) > self.max_skew:
            return self._problem("InvalidTimeStamp.Expired", "Specified time stamp or date value "
                                 "is expired.")
        if params["SignatureNonce"] in self._nonces:
            return self._problem("SignatureNonceUsed", "Specified signature nonce was used "
                                 "already.")
        self._nonces.add(params["SignatureNonce"])
        to_sign, expected = _aliyun_expected(request.method, params, self.access_key_secret)
        if not hmac.compare_digest(expected, params["Signature"]):
            return self._error("SignatureDoesNotMatch", "Specified signature does not match our "
                               f"calculation. server string to sign is:{to_sign}", 400)
        call.signature_valid = True
        if params["Action"] not in {"SendSms", "QuerySendDetails"}:
            return self._problem("InvalidAction.NotFound", "Specified api is not found, please "
                                 "check your url and method.", 404)
        if params["Version"] != "2017-05-25" or params["Format"] != "JSON":
            return self._problem("InvalidVersion", "Version must be 2017-05-25, Format JSON")
        if params["Action"] == "QuerySendDetails":
            return self._send_details(call)
        return self._send_sms(call)

    def _send_details(self, call: AliyunCall) -> web.Response:
        params = call.params
        unknown = set(params) - _ALIYUN_LOOKUP_FIELDS
        if unknown:
            self.problems.append(f"unknown parameters {sorted(unknown)}")
        for name in ("PhoneNumber", "SendDate", "PageSize", "CurrentPage"):
            if not params.get(name):
                return self._problem(f"Missing{name}", f"{name} is mandatory for this action.")
        if not re.fullmatch(r"\d{8}", params["SendDate"]):
            return self._problem("isv.INVALID_PARAMETERS", "SendDate must be yyyyMMdd", 200)
        try:
            size, page = int(params["PageSize"]), int(params["CurrentPage"])
        except ValueError:
            return self._problem("isv.INVALID_PARAMETERS", "PageSize, CurrentPage", 200)
        if not 1 <= size <= 50 or page < 1:
            return self._problem("isv.INVALID_PARAMETERS", "PageSize is 1 to 50", 200)
        records = [d for d in self.delivered
                   if d["phone"] == params["PhoneNumber"] and d["date"] == params["SendDate"]
                   and params.get("BizId") in (None, d["biz_id"])]
        records.sort(key=lambda d: d["send_date"], reverse=True)
        shown = records[(page - 1) * size:page * size]
        answer = {"Code": "OK", "Message": "OK", "RequestId": str(uuid.uuid4()).upper(),
                  "TotalCount": len(records), "SmsSendDetailDTOs": {"SmsSendDetailDTO": [{
                      "PhoneNum": d["phone"], "SendStatus": 1, "ErrCode": "",
                      "TemplateCode": d["template"], "Content": d["content"],
                      "SendDate": d["send_date"], "ReceiveDate": "",
                      "OutId": d["out_id"] or ""} for d in shown]}}
        call.answer = answer
        return web.json_response(answer)

    def content(self, sign: str, template: str, params: dict[str, Any]) -> str:
        text = self.template_texts.get(template, "")
        for name, value in params.items():
            text = text.replace(f"${{{name}}}", str(value))
        return f"【{sign}】{text}"

    def _send_sms(self, call: AliyunCall) -> web.Response:
        params = call.params
        unknown = set(params) - _ALIYUN_FIELDS
        if unknown:
            self.problems.append(f"unknown parameters {sorted(unknown)}")
        for name in ("PhoneNumbers", "SignName", "TemplateCode"):
            if not params.get(name):
                return self._problem(f"Missing{name}", f"{name} is mandatory for this action.")
        numbers = params["PhoneNumbers"].split(",")
        if len(numbers) > 1000:
            return self._problem("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制", 200)
        if len(set(numbers)) != len(numbers):
            self.problems.append("the same number twice in one PhoneNumbers")
        template_params: dict[str, Any] = {}
        if "TemplateParam" in params:
            try:
                template_params = json.loads(params["TemplateParam"])
            except ValueError:
                template_params = None  # type: ignore[assignment]
            if not isinstance(template_params, dict) or not all(
                    isinstance(v, str) for v in template_params.values()):
                return self._problem("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值",
                                     200)
        bare = []
        for number in numbers:
            match = _CN_MOBILE.match(number)
            if match is None:
                return self._error("isv.MOBILE_NUMBER_ILLEGAL",
                                   ALIYUN_MESSAGES["isv.MOBILE_NUMBER_ILLEGAL"])
            bare.append(match.group(1))
        for number in bare:
            code = self.codes.get(number, "OK")
            if code != "OK":
                return self._error(code, ALIYUN_MESSAGES.get(code, code))
        if self.daily_limit is not None and len(self.delivered) + len(bare) > self.daily_limit:
            return self._error("isv.DAY_LIMIT_CONTROL", ALIYUN_MESSAGES["isv.DAY_LIMIT_CONTROL"])
        biz_id = f"{next(self._biz)}^0"
        sent = datetime.now(_CHINA)
        for number in bare:
            self.delivered.append({"phone": number, "template": params["TemplateCode"],
                                   "params": template_params, "sign": params["SignName"],
                                   "out_id": params.get("OutId"), "biz_id": biz_id,
                                   "date": sent.strftime("%Y%m%d"),
                                   "send_date": sent.strftime("%Y-%m-%d %H:%M:%S"),
                                   "content": self.content(params["SignName"],
                                                           params["TemplateCode"],
                                                           template_params)})
        answer = {"Code": "OK", "Message": "OK", "BizId": biz_id,
                  "RequestId": str(uuid.uuid4()).upper()}
        call.answer = answer
        return web.json_response(answer)
