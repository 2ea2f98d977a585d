"""A lean Tencent Cloud SMS stand-in for ``bench.notify``: fast, rate-capped, counting.

It speaks the SendSms 2021-01-11 protocol the way ``tests.fakes.sms_servers.TencentFake``
does (same headers, same answer shapes), but is built for hundreds of thousands of calls:

* it checks the action, version, region, app id and body shape of every call, and
  recomputes the TC3-HMAC-SHA256 signature (with the tests' independent implementation)
  on one call in ``verify_every`` (a bad signature is refused with
  ``AuthFailure.SignatureFailure`` and counted);
* it accepts at most ``rate`` numbers a second (a token bucket holding one second's
  worth): a call that would go over is refused as a whole with Tencent's own
  ``RequestLimitExceeded`` error, as the real service does;
* it keeps, per accepted number, only the reference (``SessionContext``) and the phone,
  so that the benchmark can count what was lost, what was sent twice, and what a
  provider deduplicating by reference would have suppressed.

Run it with :func:`serve` in its own process; ``GET /_bench/stats`` answers the counts
and ``GET /_bench/accepted`` every accepted (reference, phone, count) (both JSON).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import re
import time
import uuid
from collections import Counter
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


@dataclass
class LeanTencent:
    """The SendSms endpoint with a rate cap and compact bookkeeping."""

    rate: float
    verify_every: int = 10
    secret_id: str = TENCENT_SECRET_ID
    secret_key: str = TENCENT_SECRET_KEY
    app_id: str = TENCENT_APP_ID
    calls: int = 0
    throttled_calls: int = 0
    throttled_numbers: int = 0
    verified: int = 0
    bad_signatures: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    first_accepted: float | None = None
    last_accepted: float | None = None
    references: Counter[str] = field(default_factory=Counter)
    phones: dict[str, str] = field(default_factory=dict)  # reference -> phone (first seen)
    wrong_phone: int = 0  # the same reference later accepted for another phone

    def __post_init__(self) -> None:
        self.bucket = TokenBucket(self.rate, max(1.0, self.rate))
        self._serial = itertools.count(1)

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
        self.calls += 1
        headers = request.headers
        if request.method != "POST" or request.path != "/":
            return self._problem("InvalidParameter", "expected POST /")
        if headers.get("X-TC-Action") != "SendSms" or headers.get("X-TC-Version") != \
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
        phones = body.get("PhoneNumberSet") if isinstance(body, dict) else None
        if not isinstance(phones, list) or not 1 <= len(phones) <= 200:
            return self._problem("InvalidParameter", "PhoneNumberSet must hold 1 to 200 numbers")
        if body.get("SmsSdkAppId") != self.app_id:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail",
                               "SmsSdkAppId verify fail")
        if not body.get("SignName") or not body.get("TemplateId") or not isinstance(
                body.get("TemplateParamSet", []), list):
            return self._problem("MissingParameter", "SignName, TemplateId, TemplateParamSet")
        context = body.get("SessionContext", "")
        if not isinstance(context, str) or len(context.encode("utf-8")) >= 512:
            return self._problem("InvalidParameter", "SessionContext must be under 512 bytes")
        if not self.bucket.take(len(phones)):
            self.throttled_calls += 1
            self.throttled_numbers += len(phones)
            return self._error("RequestLimitExceeded",
                               "请求的次数超过了频率限制。 (over the configured rate)")
        # One reference per number when the call lists them all (a call of one number
        # carries exactly its own reference); a batch whose references did not fit
        # carries a digest instead, and then the number stands for the message (the
        # benchmark gives every planned message its own phone).
        parts = context.split(",") if context else []
        references = (parts if len(parts) == len(phones)
                      else [f"phone:{phone}" for phone in phones])
        now = time.monotonic()
        statuses = []
        for phone, reference in zip(phones, references, strict=True):
            ok = isinstance(phone, str) and bool(_E164.match(phone))
            if ok:
                self.accepted += 1
                self.references[reference] += 1
                known = self.phones.setdefault(reference, phone)
                if known != phone:
                    self.wrong_phone += 1
                if self.first_accepted is None:
                    self.first_accepted = now
                self.last_accepted = now
            code = "Ok" if ok else "InvalidParameterValue.IncorrectPhoneNumber"
            statuses.append({
                "SerialNo": f"2433:{next(self._serial):012d}" if ok else "",
                "PhoneNumber": phone, "Fee": 1 if ok else 0, "SessionContext": context,
                "Code": code, "Message": "send success" if ok else "incorrect phone number",
                "IsoCode": "CN"})
        return web.json_response({"Response": {"SendStatusSet": statuses,
                                               "RequestId": str(uuid.uuid4())}})

    def _signature_ok(self, request: web.Request, raw: bytes, timestamp: str,
                      auth: re.Match[str]) -> bool:
        if abs(time.time() - int(timestamp)) > 300:
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
                "distinct_references": len(self.references),
                "sent_twice": sum(1 for n in self.references.values() if n > 1),
                "extra_sends": sum(n - 1 for n in self.references.values() if n > 1),
                "throttled_calls": self.throttled_calls,
                "throttled_numbers": self.throttled_numbers,
                "verified": self.verified, "bad_signatures": self.bad_signatures,
                "wrong_phone": self.wrong_phone, "problems": dict(self.problems),
                "accept_span": span, "rate": self.rate}

    async def stats_view(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def accepted_view(self, _request: web.Request) -> web.Response:
        rows = [[ref, self.phones.get(ref, ""), n] for ref, n in self.references.items()]
        return web.json_response(rows)


def build_app(fake: LeanTencent) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get("/_bench/stats", fake.stats_view)
    app.router.add_get("/_bench/accepted", fake.accepted_view)
    app.router.add_post("/", fake.handle)
    return app


async def _serve(rate: float, verify_every: int, ready: Any, stop: Any) -> None:
    fake = LeanTencent(rate=rate, verify_every=max(1, verify_every))
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


def serve(rate: float, verify_every: int, ready: Any, stop: Any) -> None:
    """Entry point of the fake's process: serve on a free port until ``stop`` is set."""
    logging.basicConfig(level=logging.WARNING,
                        format="[tencent fake] %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(rate, verify_every, ready, stop))
    except BaseException as exc:
        ready.put(("error", repr(exc)))
        raise
