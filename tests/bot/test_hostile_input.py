"""Every parser of untrusted input the bot process runs, fed malformed bodies: the
WeChat webhook (plain and safe mode) and the SMS providers' callbacks. Each gets a
4xx, one log line and no traceback; well-formed oddities still get a normal reply."""

from __future__ import annotations

import json
import logging
import re

import pytest

from huimin.settings import Settings
from huimin.wiring.apps import create_app
from tests.wechat import cdata, encrypted, event_xml, signed_query, text_xml

CALLBACK_TOKEN = "cbtoken"


def _with(xml: str, tag: str, inner: str) -> str:
    """``xml`` with the element ``tag`` holding ``inner`` (raw XML) instead."""
    return re.sub(rf"<{tag}>.*?</{tag}>", f"<{tag}>{inner}</{tag}>", xml, count=1)


TEXT = text_xml("低保标准是多少", openid="fuzzer")
SUBSCRIBE = event_xml("subscribe", openid="fuzzer", key="qrscene_1")
DECLARATION = '<?xml version="1.0" encoding="{}"?>'

# Bodies WeChat never sends; each must be refused with 400.
REFUSED: dict[str, str | bytes] = {
    "bogus-encoding": DECLARATION.format("x-bogus") + TEXT,
    "utf16-declared-utf8-sent": DECLARATION.format("UTF-16") + TEXT,
    "gbk": (DECLARATION.format("GBK") + TEXT).encode("gbk"),
    "nested-content": _with(TEXT, "Content", "<a>x</a>"),
    "content-with-attribute": TEXT.replace("<Content>", '<Content a="1">'),
    "repeated-content": TEXT.replace("</Content>", f"</Content><Content>{cdata('又')}</Content>"),
    "nested-sender": _with(TEXT, "FromUserName", "<a>x</a>"),
    "nested-msgtype": _with(TEXT, "MsgType", "<a>text</a>"),
    "nested-msgid": _with(TEXT, "MsgId", "<a>1</a>"),
    "nested-event": _with(SUBSCRIBE, "Event", "<a>subscribe</a>"),
    "nested-event-key": _with(SUBSCRIBE, "EventKey", "<a>qrscene_1</a>"),
    "content-nested-5000-deep": _with(TEXT, "Content", "<a>" * 5000 + "</a>" * 5000),
    "xml-nested-5000-deep": "<xml>" + "<a>" * 5000 + "</a>" * 5000 + "</xml>",
    "msgid-5000-digits": _with(TEXT, "MsgId", "9" * 5000),
    "msgid-over-64-bits": _with(TEXT, "MsgId", str(2**64)),
    "msgid-negative": _with(TEXT, "MsgId", "-1"),
    "msgid-float": _with(TEXT, "MsgId", "1e9"),
    "createtime-huge": _with(SUBSCRIBE, "CreateTime", "9" * 30),
    "createtime-float": _with(SUBSCRIBE, "CreateTime", "1.5e9"),
    "sender-5000-chars": _with(TEXT, "FromUserName", "o" * 5000),
    "empty-elements": "<xml><ToUserName/><FromUserName/><CreateTime/><MsgType/></xml>",
    "empty-root": "<xml/>",
    "binary": bytes(range(256)) * 4,
    "nul-byte": "<xml>\x00</xml>",
    "json": json.dumps({"MsgType": "text", "Content": "低保"}),
}

# Well-formed but unusual: answered normally (200), no error logged.
ANSWERED: dict[str, str] = {
    "msgtype-a-number": _with(TEXT, "MsgType", "123"),
    "unknown-event-5000-chars": _with(SUBSCRIBE, "Event", "x" * 5000),
    "empty-content": _with(TEXT, "Content", ""),
    "utf8-declared": DECLARATION.format("utf-8") + TEXT,
    "unknown-extra-element": TEXT.replace("</xml>", "<Extra><b>1</b></Extra></xml>"),
    "location-message": TEXT.replace(
        f"<MsgType>{cdata('text')}</MsgType>", f"<MsgType>{cdata('location')}</MsgType>"),
}


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]


@pytest.mark.parametrize("body", REFUSED.values(), ids=REFUSED.keys())
async def test_malformed_webhook_bodies_get_400(client, caplog, body: str | bytes) -> None:
    caplog.set_level(logging.INFO)
    data = body.encode() if isinstance(body, str) else body
    response = await client.post("/wechat", params=signed_query(), data=data)
    assert response.status == 400, await response.text()
    no_tracebacks(caplog)
    assert len(refusals(caplog)) == 1


@pytest.mark.parametrize("body", [REFUSED[k] for k in (
    "bogus-encoding", "nested-content", "repeated-content", "msgid-5000-digits",
    "createtime-huge", "sender-5000-chars", "empty-elements")])
async def test_malformed_payloads_in_safe_mode_get_400(client, caplog, body: str) -> None:
    caplog.set_level(logging.INFO)
    query, envelope = encrypted(body)
    response = await client.post("/wechat", params=query, data=envelope.encode())
    assert response.status == 400, await response.text()
    no_tracebacks(caplog)
    assert len(refusals(caplog)) == 1


async def test_safe_mode_envelope_with_a_bogus_encoding_gets_400(client, caplog) -> None:
    caplog.set_level(logging.INFO)
    query, envelope = encrypted(TEXT)
    response = await client.post("/wechat", params=query,
                                 data=(DECLARATION.format("x-bogus") + envelope).encode())
    assert response.status == 400
    no_tracebacks(caplog)


@pytest.mark.parametrize("body", ANSWERED.values(), ids=ANSWERED.keys())
async def test_odd_but_well_formed_messages_are_answered(client, caplog, body: str) -> None:
    caplog.set_level(logging.INFO)
    response = await client.post("/wechat", params=signed_query(), data=body.encode())
    assert response.status == 200
    no_tracebacks(caplog)


# ----- SMS provider callbacks ---------------------------------------------------
@pytest.fixture
async def callbacks(aiohttp_client, settings: Settings):  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(settings.with_overrides(
        callback_token=CALLBACK_TOKEN)))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


CALLBACK_REFUSED: dict[str, bytes] = {
    "nested-30000-deep": nested(30000).encode(),
    "object-nested-10000-deep": ('{"a":' * 10000 + "1" + "}" * 10000).encode(),
    "nested-9-deep": nested(9).encode(),
    "not-json": b"sid=1&report_status=SUCCESS",
    "empty": b"",
    "binary": bytes(range(256)),
    "bad-utf8": b'[{"sid": "\xff"}]',
    "number-5000-digits": b'[{"sid": ' + b"9" * 5000 + b"}]",
    "a-number": b"42",
    "a-string": b'"SUCCESS"',
    "list-of-lists": b"[[1, 2]]",
    "null": b"null",
}
CALLBACK_ACCEPTED: dict[str, bytes] = {
    "wrong-types": json.dumps([{"sid": {"x": [1]}, "report_status": ["SUCCESS"],
                                "errmsg": {"deep": {"er": [1, 2, {"x": None}]}},
                                "mobile": 13800138000}]).encode(),
    "huge-float": b'[{"sid": 1e999, "report_status": "FAIL", "errmsg": -1e999}]',
    "nan": b'[{"sid": NaN, "report_status": "SUCCESS"}]',
    "empty-list": b"[]",
    "empty-object": b"{}",
    "long-strings": json.dumps([{"sid": "s" * 20_000, "errmsg": "e" * 20_000}]).encode(),
}


@pytest.mark.parametrize("route", ["tencent/status", "tencent/reply", "aliyun/status",
                                   "aliyun/reply"])
@pytest.mark.parametrize("body", CALLBACK_REFUSED.values(), ids=CALLBACK_REFUSED.keys())
async def test_malformed_callbacks_get_400(callbacks, caplog, route: str, body: bytes) -> None:
    caplog.set_level(logging.INFO)
    response = await callbacks.post(f"/notify/callbacks/{route}",
                                    params={"token": CALLBACK_TOKEN}, data=body)
    assert response.status == 400, await response.text()
    no_tracebacks(caplog)
    assert len(refusals(caplog)) == 1


@pytest.mark.parametrize("route", ["tencent/status", "tencent/reply", "aliyun/status",
                                   "aliyun/reply"])
@pytest.mark.parametrize("body", CALLBACK_ACCEPTED.values(), ids=CALLBACK_ACCEPTED.keys())
async def test_odd_callback_values_are_recorded_without_errors(callbacks, caplog, route: str,
                                                               body: bytes) -> None:
    caplog.set_level(logging.INFO)
    response = await callbacks.post(f"/notify/callbacks/{route}",
                                    params={"token": CALLBACK_TOKEN}, data=body)
    assert response.status == 200, await response.text()
    no_tracebacks(caplog)
