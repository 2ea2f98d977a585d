"""The Tencent Cloud and Alibaba Cloud SMS providers against local fakes of both services.

The fakes (``tests.fakes.sms_servers``) recompute each request's signature with
their own code and reject it as the real services do, so every test here also
proves the requests are signed right. The signing functions are further checked
against the worked examples the providers publish in their documentation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from huimin.personal import mask_phone
from huimin.settings import Settings, SettingsError
from notify.providers import build_sms_providers
from notify.providers.aliyun import (
    AliyunSms,
    percent_encode,
    rpc_signature,
    rpc_string_to_sign,
)
from notify.providers.console import ConsoleSms
from notify.providers.tencent import (
    TencentSms,
    tc3_authorization,
    tc3_canonical_request,
    tc3_signature,
    tc3_string_to_sign,
)
from notify.sms import ProviderUnavailable, SmsMessage
from tests.fakes.sms_servers import (
    ALIYUN_ACCESS_KEY_ID,
    ALIYUN_ACCESS_KEY_SECRET,
    TENCENT_APP_ID,
    TENCENT_SECRET_ID,
    TENCENT_SECRET_KEY,
    AliyunFake,
    TencentFake,
)

SIGN = "示例县民政局"
COUNTY = {"sms_signature": SIGN}
TENCENT_TEMPLATES = {"verification_code": "1234567", "payout": "2345678"}
ALIYUN_TEMPLATES = {"verification_code": "SMS_123456789", "payout": "SMS_234567890"}
GOOD = "13800138000"
BLACK = "13900139000"
BAD = "13700137000"
OTHER = "13600136000"
FIFTH = "15000150000"
PHONES = (GOOD, BLACK, BAD, OTHER, FIFTH)


def msg(phone: str, template: str = "verification_code", params: dict[str, str] | None = None,
        reference: str = "") -> SmsMessage:
    params = {"code": "123456"} if params is None else params
    return SmsMessage(phone=phone, template=template, params=params,
                      text=f"【{SIGN}】您的验证码是{params.get('code', '')}", reference=reference)


def make_tencent(endpoint: str, **overrides: Any) -> TencentSms:
    options: dict[str, Any] = dict(
        endpoint=endpoint, region="ap-guangzhou", secret_id=TENCENT_SECRET_ID,
        secret_key=TENCENT_SECRET_KEY, app_id=TENCENT_APP_ID, sign_name=SIGN,
        templates=TENCENT_TEMPLATES)
    options.update(overrides)
    return TencentSms(**options)


def make_aliyun(endpoint: str, **overrides: Any) -> AliyunSms:
    options: dict[str, Any] = dict(
        endpoint=endpoint, access_key_id=ALIYUN_ACCESS_KEY_ID,
        access_key_secret=ALIYUN_ACCESS_KEY_SECRET, sign_name=SIGN, templates=ALIYUN_TEMPLATES)
    options.update(overrides)
    return AliyunSms(**options)


@pytest.fixture
async def tencent_fake(aiohttp_server: Any) -> AsyncIterator[TencentFake]:
    fake = TencentFake()
    await fake.start(aiohttp_server)
    yield fake
    assert not fake.problems, fake.problems


@pytest.fixture
async def aliyun_fake(aiohttp_server: Any) -> AsyncIterator[AliyunFake]:
    fake = AliyunFake()
    await fake.start(aiohttp_server)
    yield fake
    assert not fake.problems, fake.problems


@pytest.fixture
async def tencent(tencent_fake: TencentFake) -> AsyncIterator[TencentSms]:
    provider = make_tencent(tencent_fake.base_url)
    yield provider
    await provider.close()


@pytest.fixture
async def aliyun(aliyun_fake: AliyunFake) -> AsyncIterator[AliyunSms]:
    provider = make_aliyun(aliyun_fake.base_url)
    yield provider
    await provider.close()


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----- signatures against the documented examples ------------------------------------------

# Tencent Cloud, "Signature v3" (API 3.0 common docs): DescribeInstances on cvm, timestamp
# 1551113065, SecretKey Gu5t9xGARNpq86cd98joQYCN3EXAMPLE, published Signature 72e494ea....
DOC_PAYLOAD = (b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], '
               b'"Name": "instance-name"}]}')
DOC_CANONICAL = ("POST\n/\n\ncontent-type:application/json; charset=utf-8\n"
                 "host:cvm.tencentcloudapi.com\n\ncontent-type;host\n"
                 "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064")
DOC_STRING_TO_SIGN = ("TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"
                      "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031")
DOC_SIGNATURE = "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"


def test_tc3_matches_tencents_published_example() -> None:
    canonical = tc3_canonical_request(method="POST", uri="/", query="",
                                      content_type="application/json; charset=utf-8",
                                      host="cvm.tencentcloudapi.com", payload=DOC_PAYLOAD)
    assert canonical == DOC_CANONICAL
    # 1551113065 is 2019-02-26 00:44 in Beijing: the scope must use the UTC date.
    assert tc3_string_to_sign(timestamp=1551113065, service="cvm",
                              canonical_request=canonical) == DOC_STRING_TO_SIGN
    assert tc3_signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", "2019-02-25", "cvm",
                         DOC_STRING_TO_SIGN) == DOC_SIGNATURE
    assert tc3_authorization(
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        service="cvm", host="cvm.tencentcloudapi.com", payload=DOC_PAYLOAD,
        timestamp=1551113065, content_type="application/json; charset=utf-8") == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/"
        f"tc3_request, SignedHeaders=content-type;host, Signature={DOC_SIGNATURE}")


def test_tc3_for_an_sms_request_matches_the_documented_steps_done_by_hand() -> None:
    payload = json.dumps({"PhoneNumberSet": ["+8613800138000"], "SmsSdkAppId": "1400000001",
                          "SignName": SIGN, "TemplateId": "1234567",
                          "TemplateParamSet": ["123456"]}, ensure_ascii=False).encode()
    timestamp, date, key = 1700000000, "2023-11-14", "an-independent-test-key"
    # Step 1: canonical request; step 2: string to sign; step 3: derived key and HMAC.
    canonical = ("POST\n/\n\ncontent-type:application/json\nhost:sms.tencentcloudapi.com\n\n"
                 "content-type;host\n" + hashlib.sha256(payload).hexdigest())
    string_to_sign = (f"TC3-HMAC-SHA256\n{timestamp}\n{date}/sms/tc3_request\n"
                      + hashlib.sha256(canonical.encode()).hexdigest())
    derived = ("TC3" + key).encode()
    for part in (date, "sms", "tc3_request"):
        derived = hmac.new(derived, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(derived, string_to_sign.encode(), hashlib.sha256).hexdigest()

    assert tc3_signature(key, date, "sms", string_to_sign) == expected
    assert tc3_authorization("AKIDtest", key, service="sms", host="sms.tencentcloudapi.com",
                             payload=payload, timestamp=timestamp) == (
        f"TC3-HMAC-SHA256 Credential=AKIDtest/{date}/sms/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={expected}")


def test_rpc_signature_matches_aliyuns_published_example() -> None:
    # Alibaba Cloud "Signature mechanism" (RPC): DescribeRegions, testid / testsecret.
    params = {"AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML",
              "SignatureMethod": "HMAC-SHA1",
              "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
              "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z",
              "Version": "2014-05-26"}
    assert rpc_string_to_sign("GET", params) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML"
        "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"
        "%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z"
        "%26Version%3D2014-05-26")
    assert rpc_signature("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    assert percent_encode("a b*c~d/民") == "a%20b%2Ac~d%2F%E6%B0%91"


# ----- Tencent -----------------------------------------------------------------------------


async def test_tencent_batch_gets_a_result_per_number(tencent_fake: TencentFake,
                                                      tencent: TencentSms) -> None:
    tencent_fake.codes[BLACK] = "FailedOperation.PhoneNumberInBlacklist"
    tencent_fake.codes[BAD] = "InvalidParameterValue.IncorrectPhoneNumber"
    tencent_fake.reverse_statuses = True  # matched by number, not by position
    results = await tencent.send([msg(GOOD, reference="r1"), msg(BLACK, reference="r2"),
                                  msg(BAD, reference="r3")])

    assert [(r.accepted, r.permanent) for r in results] == [(True, False), (False, True),
                                                            (False, True)]
    assert {r.provider for r in results} == {"tencent"}
    assert results[1].error and results[1].error.startswith(
        "FailedOperation.PhoneNumberInBlacklist")
    assert results[2].error and results[2].error.startswith(
        "InvalidParameterValue.IncorrectPhoneNumber")
    [call] = tencent_fake.calls
    assert call.signature_valid
    assert call.headers["x-tc-action"] == "SendSms"
    assert call.headers["x-tc-version"] == "2021-01-11"
    assert call.headers["x-tc-region"] == "ap-guangzhou"
    assert call.headers["authorization"].startswith(
        f"TC3-HMAC-SHA256 Credential={TENCENT_SECRET_ID}/")
    assert call.body["PhoneNumberSet"] == ["+86" + GOOD, "+86" + BLACK, "+86" + BAD]
    assert call.body["SmsSdkAppId"] == TENCENT_APP_ID
    assert call.body["SignName"] == SIGN
    assert call.body["TemplateId"] == "1234567"
    assert call.body["TemplateParamSet"] == ["123456"]
    [ok] = [s for s in call.answer["Response"]["SendStatusSet"] if s["Code"] == "Ok"]
    assert ok["PhoneNumber"] == "+86" + GOOD
    assert results[0].message_id == ok["SerialNo"]
    assert [d["phone"] for d in tencent_fake.delivered] == ["+86" + GOOD]


async def test_tencent_different_params_go_in_separate_calls(tencent_fake: TencentFake,
                                                             tencent: TencentSms) -> None:
    payout = {"amount": "300.00", "date": "10日"}
    results = await tencent.send([
        msg(GOOD, params={"code": "111111"}), msg(BLACK, params={"code": "222222"}),
        msg(BAD, params={"code": "111111"}), msg(OTHER, template="payout", params=payout)])

    assert all(r.accepted for r in results)
    assert len({r.message_id for r in results}) == 4
    bodies = [c.body for c in tencent_fake.calls]
    assert [(b["PhoneNumberSet"], b["TemplateId"], b["TemplateParamSet"]) for b in bodies] == [
        (["+86" + GOOD, "+86" + BAD], "1234567", ["111111"]),
        (["+86" + BLACK], "1234567", ["222222"]),
        (["+86" + OTHER], "2345678", ["300.00", "10日"]),  # the params' insertion order
    ]
    assert all(c.signature_valid for c in tencent_fake.calls)
    statuses = tencent_fake.calls[0].answer["Response"]["SendStatusSet"]
    assert results[2].message_id == statuses[1]["SerialNo"]


async def test_tencent_same_number_twice_and_batch_size(tencent_fake: TencentFake) -> None:
    provider = make_tencent(tencent_fake.base_url, max_batch=2)
    try:
        results = await provider.send([msg(p) for p in (GOOD, GOOD, BLACK, BAD, OTHER)])
    finally:
        await provider.close()
    assert all(r.accepted for r in results)
    assert [len(c.body["PhoneNumberSet"]) for c in tencent_fake.calls] == [2, 2, 1]
    for call in tencent_fake.calls:
        assert len(set(call.body["PhoneNumberSet"])) == len(call.body["PhoneNumberSet"])


async def test_tencent_session_context_carries_the_reference(tencent_fake: TencentFake,
                                                             tencent: TencentSms) -> None:
    await tencent.send([msg(GOOD, reference="outbox-42")])
    await tencent.send([msg(GOOD, reference="outbox-43"), msg(BLACK, reference="outbox-44")])
    first, second = tencent_fake.calls
    assert first.body["SessionContext"] == "outbox-42"
    assert first.answer["Response"]["SendStatusSet"][0]["SessionContext"] == "outbox-42"
    assert second.body["SessionContext"] == "outbox-43,outbox-44"


async def test_tencent_invalid_number_and_missing_template_fail_alone(
        tencent_fake: TencentFake, tencent: TencentSms) -> None:
    results = await tencent.send([
        msg(GOOD), msg(BLACK, template="recheck_due", params={"date": "6月1日"}),
        msg("12345")])

    assert results[0].accepted
    assert (results[1].accepted, results[1].permanent) == (False, True)
    assert results[1].error == "no Tencent template for recheck_due"
    assert (results[2].accepted, results[2].permanent) == (False, True)
    assert results[2].error and "invalid phone number" in results[2].error
    [call] = tencent_fake.calls
    assert call.body["PhoneNumberSet"] == ["+86" + GOOD]


@pytest.mark.parametrize(("failure", "reason"), [
    ({"status": 500}, "HTTP 500"),
    ({"status": 502}, "HTTP 502"),
    ({"code": "RequestLimitExceeded", "message": "Your current request times exceeds the "
                                                 "limit, please try again later."},
     "RequestLimitExceeded"),
    ({"code": "InternalError", "message": "An internal error has occurred."}, "InternalError"),
    ({"code": "AuthFailure.SecretIdNotFound"}, "AuthFailure.SecretIdNotFound"),
    ({"code": "FailedOperation.InsufficientBalanceInSmsPackage"}, "InsufficientBalance"),
    ({"raw": b"<html>upstream gone</html>"}, "not JSON"),
    ({"raw": b'{"Response": 1}'}, "without Response"),
])
async def test_tencent_whole_call_failures_raise(tencent_fake: TencentFake, tencent: TencentSms,
                                                 failure: dict[str, Any], reason: str) -> None:
    tencent_fake.fail(2, **failure)
    for _ in range(2):
        with pytest.raises(ProviderUnavailable) as raised:
            await tencent.send([msg(GOOD), msg(BLACK)])
        assert raised.value.provider == "tencent"
        assert reason in raised.value.reason
    assert all(r.accepted for r in await tencent.send([msg(GOOD), msg(BLACK)]))
    assert len(tencent_fake.calls) == 3


async def test_tencent_timeout_and_network_errors_raise(tencent_fake: TencentFake) -> None:
    tencent_fake.fail(1, code="InternalError", delay=2.0)
    slow = make_tencent(tencent_fake.base_url, timeout=0.2)
    unreachable = make_tencent(f"http://127.0.0.1:{unused_port()}")
    try:
        with pytest.raises(ProviderUnavailable, match=r"no answer within 0\.2 s"):
            await slow.send([msg(GOOD)])
        with pytest.raises(ProviderUnavailable, match="network error"):
            await unreachable.send([msg(GOOD)])
    finally:
        await slow.close()
        await unreachable.close()


async def test_tencent_wrong_secret_is_rejected_by_the_fake(tencent_fake: TencentFake) -> None:
    provider = make_tencent(tencent_fake.base_url, secret_key="not-the-right-secret-key")
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            await provider.send([msg(GOOD)])
    finally:
        await provider.close()
    assert raised.value.reason.startswith("AuthFailure.SignatureFailure")
    [call] = tencent_fake.calls
    assert not call.signature_valid
    assert call.answer["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert tencent_fake.delivered == []


async def test_tencent_failure_after_an_accepted_call_does_not_lose_it(
        tencent_fake: TencentFake, tencent: TencentSms) -> None:
    tencent_fake.fail(1, after=1, code="RequestLimitExceeded")
    results = await tencent.send([msg(GOOD, params={"code": "111111"}),
                                  msg(BLACK, params={"code": "222222"}),
                                  msg(BAD, params={"code": "333333"})])
    assert results[0].accepted
    for result in results[1:]:
        assert (result.accepted, result.permanent) == (False, False)
        assert result.error and result.error.startswith("not sent: RequestLimitExceeded")
    assert len(tencent_fake.calls) == 2  # stops at the failure


async def test_tencent_per_number_limits_are_transient(tencent_fake: TencentFake,
                                                       tencent: TencentSms) -> None:
    tencent_fake.codes[BLACK] = "LimitExceeded.PhoneNumberDailyLimit"
    results = await tencent.send([msg(GOOD), msg(BLACK)])
    assert results[0].accepted
    assert (results[1].accepted, results[1].permanent) == (False, False)
    assert results[1].error and results[1].error.startswith("LimitExceeded.PhoneNumberDailyLimit")


async def test_tencent_empty_package_makes_the_provider_unavailable(
        tencent_fake: TencentFake, tencent: TencentSms) -> None:
    for phone in (GOOD, BLACK):
        tencent_fake.codes[phone] = "FailedOperation.InsufficientBalanceInSmsPackage"
    with pytest.raises(ProviderUnavailable, match="InsufficientBalanceInSmsPackage"):
        await tencent.send([msg(GOOD), msg(BLACK)])


async def test_tencent_whole_call_number_error_is_resent_one_by_one(
        tencent_fake: TencentFake, tencent: TencentSms) -> None:
    tencent_fake.fail(1, code="InvalidParameterValue.IncorrectPhoneNumber")
    tencent_fake.codes[BAD] = "InvalidParameterValue.IncorrectPhoneNumber"
    results = await tencent.send([msg(GOOD), msg(BAD), msg(BLACK)])
    assert [(r.accepted, r.permanent) for r in results] == [(True, False), (False, True),
                                                            (True, False)]
    assert [len(c.body["PhoneNumberSet"]) for c in tencent_fake.calls] == [3, 1, 1, 1]


async def test_tencent_whole_call_template_error_is_permanent(tencent_fake: TencentFake,
                                                              tencent: TencentSms) -> None:
    tencent_fake.fail(1, code="FailedOperation.TemplateIncorrectOrUnapproved")
    results = await tencent.send([msg(GOOD), msg(BLACK)])
    assert [(r.accepted, r.permanent) for r in results] == [(False, True), (False, True)]


# ----- Aliyun ------------------------------------------------------------------------------


async def test_aliyun_success_with_biz_id(aliyun_fake: AliyunFake, aliyun: AliyunSms) -> None:
    results = await aliyun.send([msg(GOOD, reference="r1"), msg(BLACK, reference="r2"),
                                 msg(BAD, template="payout",
                                     params={"amount": "300.00", "date": "10日"},
                                     reference="r3")])
    assert all(r.accepted and r.provider == "aliyun" for r in results)
    first, second = aliyun_fake.calls
    assert first.signature_valid and second.signature_valid
    assert first.method == "POST"
    params = first.params
    assert params["Action"] == "SendSms"
    assert params["Version"] == "2017-05-25"
    assert params["Format"] == "JSON"
    assert params["SignatureMethod"] == "HMAC-SHA1"
    assert params["SignatureVersion"] == "1.0"
    assert params["AccessKeyId"] == ALIYUN_ACCESS_KEY_ID
    assert params["PhoneNumbers"] == f"{GOOD},{BLACK}"
    assert params["SignName"] == SIGN
    assert params["TemplateCode"] == "SMS_123456789"
    assert json.loads(params["TemplateParam"]) == {"code": "123456"}
    assert params["OutId"] == "r1,r2"
    assert json.loads(second.params["TemplateParam"]) == {"amount": "300.00", "date": "10日"}
    assert second.params["OutId"] == "r3"
    assert first.params["SignatureNonce"] != second.params["SignatureNonce"]
    assert results[0].message_id == results[1].message_id == first.answer["BizId"]
    assert results[2].message_id == second.answer["BizId"]


@pytest.mark.parametrize("code", ["isv.SMS_TEMPLATE_ILLEGAL", "isv.SMS_SIGNATURE_ILLEGAL",
                                  "isv.TEMPLATE_MISSING_PARAMETERS",
                                  "isv.BLACK_KEY_CONTROL_LIMIT", "isv.INVALID_PARAMETERS",
                                  "isv.MOBILE_COUNT_OVER_LIMIT"])
async def test_aliyun_permanent_codes(aliyun_fake: AliyunFake, aliyun: AliyunSms,
                                      code: str) -> None:
    aliyun_fake.fail(1, code=code)
    results = await aliyun.send([msg(GOOD), msg(BLACK)])
    assert [(r.accepted, r.permanent) for r in results] == [(False, True), (False, True)]
    assert all(r.error and r.error.startswith(code) for r in results)


async def test_aliyun_bad_number_alone_is_permanent(aliyun_fake: AliyunFake,
                                                    aliyun: AliyunSms) -> None:
    aliyun_fake.codes[BAD] = "isv.MOBILE_NUMBER_ILLEGAL"
    [result] = await aliyun.send([msg(BAD)])
    assert (result.accepted, result.permanent) == (False, True)
    assert len(aliyun_fake.calls) == 1


async def test_aliyun_bad_number_in_a_batch_is_found_one_by_one(aliyun_fake: AliyunFake,
                                                                aliyun: AliyunSms) -> None:
    aliyun_fake.codes[BAD] = "isv.MOBILE_NUMBER_ILLEGAL"
    results = await aliyun.send([msg(GOOD), msg(BAD), msg(BLACK)])
    assert [(r.accepted, r.permanent) for r in results] == [(True, False), (False, True),
                                                            (True, False)]
    assert [c.params["PhoneNumbers"] for c in aliyun_fake.calls] == [
        f"{GOOD},{BAD},{BLACK}", GOOD, BAD, BLACK]
    assert sorted(d["phone"] for d in aliyun_fake.delivered) == sorted([GOOD, BLACK])


@pytest.mark.parametrize("code", ["isv.BUSINESS_LIMIT_CONTROL", "isp.SYSTEM_ERROR"])
async def test_aliyun_transient_codes(aliyun_fake: AliyunFake, aliyun: AliyunSms,
                                      code: str) -> None:
    aliyun_fake.codes[GOOD] = code
    [result] = await aliyun.send([msg(GOOD)])
    assert (result.accepted, result.permanent) == (False, False)
    assert result.error and result.error.startswith(code)


@pytest.mark.parametrize(("failure", "reason"), [
    ({"code": "isv.AMOUNT_NOT_ENOUGH"}, "isv.AMOUNT_NOT_ENOUGH"),
    ({"code": "isv.OUT_OF_SERVICE"}, "isv.OUT_OF_SERVICE"),
    ({"code": "isv.DAY_LIMIT_CONTROL"}, "isv.DAY_LIMIT_CONTROL"),
    ({"code": "Throttling.User", "status": 400}, "Throttling.User"),
    ({"status": 500}, "HTTP 500"),
    ({"status": 503}, "HTTP 503"),
    ({"raw": b"<html>oops</html>"}, "not JSON"),
])
async def test_aliyun_unavailable(aliyun_fake: AliyunFake, aliyun: AliyunSms,
                                  failure: dict[str, Any], reason: str) -> None:
    aliyun_fake.fail(1, **failure)
    with pytest.raises(ProviderUnavailable) as raised:
        await aliyun.send([msg(GOOD), msg(BLACK)])
    assert raised.value.provider == "aliyun"
    assert reason in raised.value.reason
    assert all(r.accepted for r in await aliyun.send([msg(GOOD)]))


async def test_aliyun_wrong_secret_or_key_is_rejected_by_the_fake(aliyun_fake: AliyunFake) -> None:
    wrong_secret = make_aliyun(aliyun_fake.base_url, access_key_secret="not-the-secret")
    wrong_key = make_aliyun(aliyun_fake.base_url, access_key_id="LTAI5tNoSuchKey")
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            await wrong_secret.send([msg(GOOD), msg(BLACK)])
        assert raised.value.reason.startswith("SignatureDoesNotMatch")
        # Aliyun echoes its string to sign, numbers included: they must come out masked.
        assert mask_phone(GOOD) in raised.value.reason
        assert GOOD not in raised.value.reason and BLACK not in raised.value.reason
        with pytest.raises(ProviderUnavailable, match=r"InvalidAccessKeyId\.NotFound"):
            await wrong_key.send([msg(GOOD)])
    finally:
        await wrong_secret.close()
        await wrong_key.close()
    assert [c.signature_valid for c in aliyun_fake.calls] == [False, False]
    assert [c.status for c in aliyun_fake.calls] == [400, 404]
    assert aliyun_fake.delivered == []


async def test_aliyun_failure_after_an_accepted_call_does_not_lose_it(
        aliyun_fake: AliyunFake, aliyun: AliyunSms) -> None:
    aliyun_fake.fail(1, after=1, status=500)
    results = await aliyun.send([msg(GOOD, params={"code": "111111"}),
                                 msg(BLACK, params={"code": "222222"})])
    assert results[0].accepted
    assert (results[1].accepted, results[1].permanent) == (False, False)
    assert results[1].error == "not sent: HTTP 500"


# ----- building the providers from settings ------------------------------------------------

FULL = dict(
    sms_tencent_secret_id=TENCENT_SECRET_ID, sms_tencent_secret_key=TENCENT_SECRET_KEY,
    sms_tencent_app_id=TENCENT_APP_ID, sms_tencent_templates="verification_code=1234567",
    sms_aliyun_access_key_id=ALIYUN_ACCESS_KEY_ID,
    sms_aliyun_access_key_secret=ALIYUN_ACCESS_KEY_SECRET,
    sms_aliyun_templates="verification_code=SMS_123456789,payout=SMS_234567890")


def test_build_sms_providers_in_the_configured_order() -> None:
    settings = Settings().with_overrides(sms_provider="aliyun, console,tencent", **FULL)
    providers = build_sms_providers(settings, COUNTY)
    assert [p.name for p in providers] == ["aliyun", "console", "tencent"]
    aliyun, console, tencent = providers
    assert isinstance(aliyun, AliyunSms) and isinstance(console, ConsoleSms)
    assert isinstance(tencent, TencentSms)
    assert aliyun.sign_name == tencent.sign_name == SIGN
    assert tencent.templates == {"verification_code": "1234567"}
    assert aliyun.templates == {"verification_code": "SMS_123456789", "payout": "SMS_234567890"}
    assert str(tencent.url) == "https://sms.tencentcloudapi.com"
    assert tencent.host == "sms.tencentcloudapi.com" and tencent.region == "ap-guangzhou"
    assert TENCENT_SECRET_KEY not in repr(tencent)
    assert ALIYUN_ACCESS_KEY_SECRET not in repr(aliyun)


def test_console_alone_needs_no_credentials() -> None:
    [console] = build_sms_providers(Settings(), COUNTY)
    assert isinstance(console, ConsoleSms)
    only_tencent = Settings().with_overrides(sms_provider="tencent", **{
        k: v for k, v in FULL.items() if k.startswith("sms_tencent")})
    assert [p.name for p in build_sms_providers(only_tencent, COUNTY)] == ["tencent"]


@pytest.mark.parametrize(("setting", "provider"), [
    ("sms_tencent_secret_id", "tencent"), ("sms_tencent_secret_key", "tencent"),
    ("sms_tencent_app_id", "tencent"), ("sms_tencent_templates", "tencent"),
    ("sms_aliyun_access_key_id", "aliyun"), ("sms_aliyun_access_key_secret", "aliyun"),
    ("sms_aliyun_templates", "aliyun"),
])
def test_missing_credentials_name_the_variable(setting: str, provider: str) -> None:
    settings = Settings().with_overrides(sms_provider=f"console,{provider}",
                                         **dict(FULL, **{setting: None}))
    with pytest.raises(SettingsError) as raised:
        build_sms_providers(settings, COUNTY)
    variable = "HUIMIN_" + setting.upper()
    assert str(raised.value) == (
        f"{variable} is required when HUIMIN_SMS_PROVIDER includes {provider}")


def test_missing_signature_is_a_settings_error() -> None:
    settings = Settings().with_overrides(sms_provider="tencent", **FULL)
    with pytest.raises(SettingsError, match="sms_signature"):
        build_sms_providers(settings, {"county_name": "示例县"})


# ----- privacy -----------------------------------------------------------------------------


async def test_no_clear_phone_number_in_logs_or_results(
        caplog: pytest.LogCaptureFixture, tencent_fake: TencentFake, tencent: TencentSms,
        aliyun_fake: AliyunFake, aliyun: AliyunSms) -> None:
    caplog.set_level(logging.DEBUG)
    tencent_fake.codes[BLACK] = "FailedOperation.PhoneNumberInBlacklist"
    tencent_fake.codes[BAD] = "LimitExceeded.PhoneNumberDailyLimit"
    aliyun_fake.codes[BAD] = "isv.MOBILE_NUMBER_ILLEGAL"
    texts: list[str] = []
    batch = [msg(GOOD), msg(BLACK), msg(BAD), msg(OTHER, template="recheck_due"),
             msg(FIFTH, params={"code": "654321"})]
    for provider in (tencent, aliyun):
        results = await provider.send(batch)
        texts += [r.error or "" for r in results] + [r.message_id or "" for r in results]
    tencent_fake.fail(1, code="InternalError", message=f"internal error for +86{GOOD}")
    aliyun_fake.fail(1, code="isv.AMOUNT_NOT_ENOUGH", message=f"账户余额不足 {GOOD}")
    wrong = make_aliyun(aliyun_fake.base_url, access_key_secret="wrong")
    try:
        for provider in (tencent, aliyun, wrong):
            with pytest.raises(ProviderUnavailable) as raised:
                await provider.send(batch)
            texts.append(str(raised.value))
    finally:
        await wrong.close()

    logged = "\n".join(record.getMessage() for record in caplog.records)
    everything = logged + "\n" + "\n".join(texts)
    for phone in PHONES:
        assert phone not in everything, phone
    assert mask_phone(BLACK) in logged and mask_phone(BAD) in logged


# ----- looking up what was sent (crash recovery) -------------------------------------------
async def test_tencent_finds_its_record_of_a_message_by_content_and_time(
        tencent: TencentSms, tencent_fake: TencentFake) -> None:
    from datetime import timedelta

    from huimin.clock import utcnow

    tencent_fake.template_texts = {"1234567": "您的验证码是{1}"}
    before = utcnow() - timedelta(seconds=5)
    [result] = await tencent.send([msg(GOOD, params={"code": "123456"}, reference="s1")])
    after = utcnow()
    found = await tencent.find_sent(msg(GOOD, params={"code": "123456"}), before, after)
    assert found is not None and found.message_id == result.message_id
    assert found.delivered is None  # on its way; no report yet
    call = tencent_fake.calls[-1]
    assert call.headers["x-tc-action"] == "DescribeSendRecordList"
    assert call.body["PhoneNumber"] == "+86" + GOOD and call.body["Limit"] == 50
    # Tencent stores the code masked: another code's message matches as well, but a
    # different text does not, nor another number, nor a window before the send.
    assert await tencent.find_sent(msg(GOOD, params={"code": "654321"}), before, after)
    other = SmsMessage(phone=GOOD, template="payout", params={}, text=f"【{SIGN}】别的内容")
    assert await tencent.find_sent(other, before, after) is None
    assert await tencent.find_sent(msg(OTHER), before, after) is None
    assert await tencent.find_sent(msg(GOOD), before - timedelta(hours=1),
                                   before - timedelta(minutes=30)) is None
    tencent_fake.fail(code="InternalError")
    with pytest.raises(ProviderUnavailable):
        await tencent.find_sent(msg(GOOD), before, after)


async def test_aliyun_finds_its_record_of_a_message_by_out_id(
        aliyun: AliyunSms, aliyun_fake: AliyunFake) -> None:
    from datetime import timedelta

    from huimin.clock import utcnow

    before = utcnow() - timedelta(seconds=5)
    await aliyun.send([msg(GOOD, reference="s-first"), msg(OTHER, reference="s-first")])
    after = utcnow()
    found = await aliyun.find_sent(msg(GOOD, reference="s-first"), before, after)
    assert found is not None and found.provider == "aliyun"
    call = aliyun_fake.calls[-1]
    assert call.params["Action"] == "QuerySendDetails" and call.params["PhoneNumber"] == GOOD
    assert call.params["SendDate"].isdigit() and len(call.params["SendDate"]) == 8
    assert await aliyun.find_sent(msg(GOOD, reference="s-other"), before, after) is None
    assert await aliyun.find_sent(msg(GOOD, template="payout", reference="s-first"),
                                  before, after) is None
    assert await aliyun.find_sent(msg(FIFTH, reference="s-first"), before, after) is None
    aliyun_fake.fail(code="isp.SYSTEM_ERROR")
    with pytest.raises(ProviderUnavailable):
        await aliyun.find_sent(msg(GOOD, reference="s-first"), before, after)
