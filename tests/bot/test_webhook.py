"""The ``/wechat`` endpoint over real HTTP, with requests built as WeChat builds them.

Every request in this file goes through :func:`get` or :func:`post`, which assert
that the server never answers with a 5xx status, whatever it is sent.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from defusedxml.ElementTree import fromstring
from sqlalchemy import func, select
from wechatpy.crypto import WeChatCrypto

from bot.models import AskedQuestion, Follower, HandledMessage
from bot.webhook import sign
from content import FAQ_DIR, MENU_FILE
from huimin.db import Database
from huimin.settings import Settings
from huimin.wiring.apps import create_app
from notify.models import LateReply
from tests.wechat import (
    ACCOUNT,
    AES_KEY,
    TOKEN,
    cdata,
    decrypt_reply,
    encrypted,
    event_xml,
    media_xml,
    reply_text,
    signed_query,
    text_xml,
    voice_xml,
)

TEST_DATABASE_URL = os.environ.get("HUIMIN_TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("HUIMIN_TEST_REDIS_URL")
OFF_TOPIC = "明天会下雨吗"
MENU = yaml.safe_load(MENU_FILE.read_text(encoding="utf-8"))
FAQ_IDS = {entry["question"]: entry["id"]
           for path in sorted(FAQ_DIR.glob("*.yaml"))
           for entry in yaml.safe_load(path.read_text(encoding="utf-8")) or ()}
_NUMBERED = re.compile(r"^(\d+)\. (.+)$", re.MULTILINE)


# ----- helpers ---------------------------------------------------------------
@dataclass
class Answer:
    status: int
    body: str
    content_type: str


async def _answer(response: Any) -> Answer:
    answer = Answer(response.status, await response.text(), response.content_type)
    assert answer.status < 500, f"server error {answer.status}: {answer.body!r}"
    return answer


async def get(client: Any, query: dict[str, str]) -> Answer:
    return await _answer(await client.get("/wechat", params=query))


async def post(client: Any, body: str | bytes | Any, query: dict[str, str] | None = None,
               ) -> Answer:
    data = body.encode() if isinstance(body, str) else body
    query = signed_query() if query is None else query
    return await _answer(await client.post("/wechat", params=query, data=data))


async def say(client: Any, xml: str) -> str:
    """Post a plain-mode message and return the reply's text ('' for 'success')."""
    answer = await post(client, xml)
    assert answer.status == 200, answer.body
    return reply_text(answer.body)


async def ask(client: Any, question: str, openid: str) -> str:
    return await say(client, text_xml(question, openid=openid))


def essence(body: str) -> tuple[str | None, ...]:
    """A passive reply without its CreateTime (stamped when sent, so retries differ)."""
    if body == "success":
        return (body,)
    root = fromstring(body)
    return tuple(root.findtext(tag) for tag in ("ToUserName", "FromUserName", "MsgType",
                                                 "Content"))


def declined(reply: str) -> bool:
    """The reply to an off-topic question (OFF_TOPIC): what the bot can answer, and the menu."""
    return all(line in reply for line in menu_lines())


def county() -> dict[str, Any]:
    return yaml.safe_load(Settings().county_file.read_text(encoding="utf-8"))


def numbered(reply: str) -> dict[int, str]:
    """The numbered lines of a list reply: {1: '什么是低保？', ...}."""
    return {int(n): text.strip() for n, text in _NUMBERED.findall(reply)}


def menu_lines() -> list[str]:
    return [f"{i}. {topic['name']}" for i, topic in enumerate(MENU["topics"], start=1)]


async def fetch(settings: Settings, statement: Any) -> list[Any]:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return list((await session.execute(statement)).all())
    finally:
        await db.dispose()


async def asked_rows(settings: Settings) -> list[AskedQuestion]:
    return [row[0] for row in await fetch(settings, select(AskedQuestion))]


async def follower(settings: Settings, openid: str) -> list[Follower]:
    return [row[0] for row in
            await fetch(settings, select(Follower).where(Follower.openid == openid))]


def safe_body(encrypt: str) -> str:
    return (f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName>"
            f"<Encrypt>{cdata(encrypt)}</Encrypt></xml>")


def safe_query(timestamp: str, nonce: str, encrypt: str) -> dict[str, str]:
    return signed_query(timestamp=int(timestamp), nonce=nonce, encrypt_type="aes",
                        msg_signature=sign(TOKEN, timestamp, nonce, encrypt))


# ----- 1. GET handshake ------------------------------------------------------
async def test_handshake_with_right_signature_echoes_echostr(client):
    answer = await get(client, signed_query(echostr="4815162342abc"))
    assert answer.status == 200
    assert answer.body == "4815162342abc"


async def test_handshake_with_wrong_signature_is_forbidden(client):
    query = signed_query(echostr="4815162342")
    query["signature"] = sign("othertoken", query["timestamp"], query["nonce"])
    answer = await get(client, query)
    assert answer.status == 403
    assert "4815162342" not in answer.body


@pytest.mark.parametrize("missing", ["signature", "timestamp", "nonce", "everything"])
async def test_handshake_with_missing_params_is_forbidden(client, missing):
    query = signed_query(echostr="4815162342")
    query = {} if missing == "everything" else {k: v for k, v in query.items() if k != missing}
    answer = await get(client, query)
    assert answer.status == 403
    assert "4815162342" not in answer.body


# ----- 2. plain mode ---------------------------------------------------------
async def test_plain_text_question_gets_faq_answer_addressed_back(client):
    answer = await post(client, text_xml("低保标准是多少", openid="plain-user"))
    assert answer.status == 200
    assert answer.content_type == "application/xml"
    root = fromstring(answer.body)
    assert root.tag == "xml"
    assert root.findtext("MsgType") == "text"
    assert root.findtext("ToUserName") == "plain-user"
    assert root.findtext("FromUserName") == ACCOUNT
    assert root.findtext("CreateTime", "").isdigit()
    assert "7500" in root.findtext("Content", "")


# ----- 3. compatible and safe mode -------------------------------------------
@pytest.mark.parametrize("compatible", [True, False], ids=["compatible", "safe"])
async def test_encrypted_request_gets_encrypted_reply(client, compatible):
    query, body = encrypted(text_xml("低保标准是多少", openid="secret-user"),
                            compatible=compatible)
    if compatible:
        assert "<Content>" in body and "<Encrypt>" in body
    else:
        assert "<Content>" not in body
    answer = await post(client, body, query)
    assert answer.status == 200
    assert answer.content_type == "application/xml"
    root = fromstring(answer.body)
    assert root.findtext("Encrypt")
    assert root.findtext("MsgSignature")
    assert root.findtext("Content") is None  # nothing in clear
    reply = decrypt_reply(answer.body, query)  # checks MsgSignature and AppId too
    inner = fromstring(reply)
    assert inner.findtext("ToUserName") == "secret-user"
    assert inner.findtext("FromUserName") == ACCOUNT
    assert "7500" in reply_text(reply)


async def test_safe_mode_with_wrong_msg_signature_is_forbidden(client):
    query, body = encrypted(text_xml("低保标准是多少"))
    query["msg_signature"] = sign(TOKEN, query["timestamp"], query["nonce"], "somethingelse")
    answer = await post(client, body, query)
    assert answer.status == 403


async def test_safe_mode_without_msg_signature_is_forbidden(client):
    query, body = encrypted(text_xml("低保标准是多少"))
    del query["msg_signature"]
    answer = await post(client, body, query)
    assert answer.status == 403


async def test_safe_mode_message_for_another_appid_is_forbidden(client):
    other = WeChatCrypto(TOKEN, AES_KEY, "wxotherappid0000")
    timestamp, nonce = str(int(time.time())), "271828182"
    envelope = other.encrypt_message(text_xml("低保标准是多少"), nonce, timestamp)
    encrypt = fromstring(envelope).findtext("Encrypt")
    answer = await post(client, safe_body(encrypt), safe_query(timestamp, nonce, encrypt))
    assert answer.status == 403


@pytest.mark.parametrize("encrypt", [
    base64.b64encode(b"not encrypted at all").decode(),
    base64.b64encode(b"\x00" * 32).decode(),
    base64.b64encode(bytes(range(64))).decode(),
    "!!!!",
])
async def test_safe_mode_garbage_payload_with_right_signature_is_bad_request(client, encrypt):
    timestamp, nonce = str(int(time.time())), "314159265"
    answer = await post(client, safe_body(encrypt), safe_query(timestamp, nonce, encrypt))
    assert answer.status == 400


async def test_safe_mode_without_encrypt_element_is_bad_request(client):
    xml = text_xml("低保标准是多少")
    query = signed_query(encrypt_type="aes", msg_signature=sign(TOKEN, "x"))
    answer = await post(client, xml, query)
    assert answer.status == 400


@pytest.mark.parametrize("inner", [
    "this is not xml",
    '<!DOCTYPE xml [<!ENTITY a "b">]><xml><MsgType>text</MsgType><Content>&a;</Content></xml>',
    "<message><MsgType>text</MsgType></message>",
], ids=["not-xml", "doctype", "wrong-root"])
async def test_safe_mode_hostile_decrypted_payload_is_bad_request(client, inner):
    query, body = encrypted(inner)
    answer = await post(client, body, query)
    assert answer.status == 400


async def test_server_without_aes_key_rejects_safe_mode(aiohttp_client, settings):
    plain_only = await aiohttp_client(create_app(settings.with_overrides(wechat_aes_key=None)))
    query, body = encrypted(text_xml("低保标准是多少"))
    answer = await post(plain_only, body, query)
    assert answer.status == 400
    # plain mode still works on that server
    assert "7500" in await ask(plain_only, "低保标准是多少", "plain-only-user")


# ----- 4. hostile requests ---------------------------------------------------
async def test_post_with_bad_signature_is_forbidden(client):
    query = signed_query()
    query["signature"] = "0" * 40
    answer = await post(client, text_xml("低保标准是多少"), query)
    assert answer.status == 403
    assert "7500" not in answer.body


async def test_post_signed_with_another_token_is_forbidden(client):
    answer = await post(client, text_xml("低保标准是多少"), signed_query(token="othertoken"))
    assert answer.status == 403


@pytest.mark.parametrize("offset", [-360, 360], ids=["6-minutes-old", "6-minutes-ahead"])
async def test_timestamp_outside_replay_window_is_forbidden(client, offset):
    query = signed_query(timestamp=int(time.time()) + offset)  # correctly signed
    answer = await post(client, text_xml("低保标准是多少"), query)
    assert answer.status == 403
    assert (await get(client, {**query, "echostr": "x"})).status == 403


async def test_timestamp_within_replay_window_is_accepted(client):
    query = signed_query(timestamp=int(time.time()) - 60)
    answer = await post(client, text_xml("低保标准是多少"), query)
    assert answer.status == 200
    assert "7500" in reply_text(answer.body)


@pytest.mark.parametrize("timestamp", ["abc", "", "-1", "1.5", "0x10"])
async def test_non_numeric_timestamp_is_forbidden(client, timestamp):
    nonce = "123456789"
    query = {"signature": sign(TOKEN, timestamp, nonce), "timestamp": timestamp,
             "nonce": nonce}
    answer = await post(client, text_xml("低保标准是多少"), query)
    assert answer.status == 403


@pytest.mark.parametrize("timestamp", ["²", str(int(time.time())) + "²", "9" * 4400],
                         ids=["superscript", "now-superscript", "4400-digits"])
async def test_exotic_digit_timestamp_is_forbidden(client, timestamp):
    nonce = "123456789"
    query = {"signature": sign(TOKEN, timestamp, nonce), "timestamp": timestamp,
             "nonce": nonce, "echostr": "x"}
    assert (await get(client, query)).status == 403


async def test_missing_nonce_is_forbidden(client):
    query = signed_query()
    del query["nonce"]
    answer = await post(client, text_xml("低保标准是多少"), query)
    assert answer.status == 403


@pytest.mark.parametrize("body", [
    "<xml><ToUserName>a</ToUserName>",
    "<xml><a></b></xml>",
    "just text",
    "<xml>\xff</xml>".encode("latin-1"),
], ids=["unclosed", "mismatched", "not-xml", "bad-utf8"])
async def test_malformed_xml_is_bad_request(client, body):
    answer = await post(client, body)
    assert answer.status == 400


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE xml [\n<!ENTITY lol "lol">\n'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n'
    '<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">\n]>\n'
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName>"
    "<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&lol4;</Content>"
    "<MsgId>1</MsgId></xml>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName>"
    "<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&xxe;</Content>"
    "<MsgId>1</MsgId></xml>"
)
PLAIN_DOCTYPE = '<!DOCTYPE xml SYSTEM "http://example.invalid/x.dtd">' + text_xml("低保")
LOWERCASE_DOCTYPE = "<!doctype xml>" + text_xml("低保")


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, PLAIN_DOCTYPE,
                                  LOWERCASE_DOCTYPE],
                         ids=["billion-laughs", "external-entity", "doctype", "lowercase"])
async def test_doctype_and_entities_are_bad_request(client, body):
    answer = await post(client, body)
    assert answer.status == 400
    assert "root:" not in answer.body  # no /etc/passwd echoed back


async def test_doctype_in_utf16_body_is_bad_request(client):
    body = ('<?xml version="1.0" encoding="UTF-16"?>' + EXTERNAL_ENTITY.split("?>", 1)[1])
    answer = await post(client, body.encode("utf-16"))
    assert answer.status == 400


async def test_root_other_than_xml_is_bad_request(client):
    body = text_xml("低保标准是多少").replace("<xml>", "<message>").replace("</xml>",
                                                                        "</message>")
    answer = await post(client, body)
    assert answer.status == 400


async def test_xml_without_msgtype_is_bad_request(client):
    body = re.sub(r"<MsgType>.*?</MsgType>", "", text_xml("低保标准是多少"))
    assert "MsgType" not in body
    answer = await post(client, body)
    assert answer.status == 400


async def test_xml_without_sender_is_bad_request(client):
    body = re.sub(r"<FromUserName>.*?</FromUserName>", "", text_xml("低保标准是多少"))
    answer = await post(client, body)
    assert answer.status == 400


async def test_body_over_the_limit_is_too_large(client, settings):
    assert settings.max_body_bytes == 64 * 1024
    body = text_xml("低" * (70 * 1024 // 3))
    assert len(body.encode()) > 70 * 1024 - 100
    answer = await post(client, body)
    assert answer.status == 413


async def test_chunked_body_over_the_limit_is_too_large(client):
    async def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(70):
            yield b"<xml>" + b" " * 1019

    answer = await post(client, chunks())
    assert answer.status == 413


@pytest.mark.parametrize("body", [b"", b"   \r\n  "], ids=["empty", "blank"])
async def test_empty_body_is_bad_request(client, body):
    answer = await post(client, body)
    assert answer.status == 400


async def test_non_numeric_msgid_is_bad_request(client):
    body = re.sub(r"<MsgId>\d+</MsgId>", "<MsgId>abc</MsgId>", text_xml(OFF_TOPIC))
    answer = await post(client, body)
    assert answer.status == 400


async def test_event_with_non_numeric_createtime_is_bad_request(client):
    body = re.sub(r"<CreateTime>\d+</CreateTime>", "<CreateTime>soon</CreateTime>",
                  event_xml("subscribe", openid="odd-time"))
    answer = await post(client, body)
    assert answer.status == 400


async def test_unknown_message_type_gets_guidance_not_error(client):
    body = text_xml("x").replace("<![CDATA[text]]>", "<![CDATA[hologram]]>")
    reply = await say(client, body)
    assert "文字和语音" in reply


# ----- 5. message kinds ------------------------------------------------------
async def test_voice_with_recognition_is_answered_like_text(client):
    reply = await say(client, voice_xml("低保标准是多少", openid="voice-user"))
    assert "7500" in reply
    assert reply == await ask(client, "低保标准是多少", "text-user")


@pytest.mark.parametrize("recognition", ["", "  ", None], ids=["empty", "blank", "absent"])
async def test_voice_without_recognition_asks_again_with_menu(client, recognition):
    reply = await say(client, voice_xml(recognition, openid="voice-user"))
    assert "没听清" in reply
    assert "1. 低保" in reply
    for line in menu_lines():
        assert line in reply


@pytest.mark.parametrize(("kind", "phrase"), [
    ("image", "收到您发的图片"),
    ("video", "收到您发的视频"),
    ("location", "收到您的位置"),
    ("link", "收到您发的链接"),
])
async def test_media_messages_get_short_guidance(client, kind, phrase):
    reply = await say(client, media_xml(kind, openid="media-user"))
    assert phrase in reply
    assert len(reply) < 200
    if kind == "location":
        assert county()["hotline"] in reply


async def test_subscribe_gets_welcome_with_bureau_and_menu(client, settings):
    reply = await say(client, event_xml("subscribe", openid="new-follower"))
    assert county()["bureau_name"] in reply
    assert "1. 低保" in reply
    for line in menu_lines():
        assert line in reply
    [row] = await follower(settings, "new-follower")
    assert row.following is True
    assert row.subscribed_at is not None


async def test_unsubscribe_answers_success_and_records_it(client, settings):
    assert (await say(client, event_xml("subscribe", openid="leaver", created=1_700_000_000)))
    answer = await post(client, event_xml("unsubscribe", openid="leaver"))
    assert answer.status == 200
    assert answer.body == "success"
    [row] = await follower(settings, "leaver")
    assert row.following is False
    assert row.unsubscribed_at is not None


async def test_unsubscribe_of_unknown_follower_is_recorded(client, settings):
    answer = await post(client, event_xml("unsubscribe", openid="never-seen"))
    assert answer.body == "success"
    [row] = await follower(settings, "never-seen")
    assert row.following is False


async def test_click_topic_lists_questions_and_number_picks_one(client):
    reply = await say(client, event_xml("CLICK", openid="clicker", key="TOPIC_DIBAO"))
    questions = numbered(reply)
    expected = [q for q, faq_id in FAQ_IDS.items() if faq_id in MENU["topics"][0]["faq"]]
    assert len(questions) == len(MENU["topics"][0]["faq"]) >= 2
    assert sorted(questions.values()) == sorted(expected)
    assert all(q.endswith(("？", "?")) for q in questions.values())
    second = await ask(client, "2", "clicker")
    assert second == await ask(client, questions[2], "someone-else")
    assert second not in reply


def custom_menu_keys() -> list[str]:
    """Every CLICK key of the WeChat custom menu (buttons and sub-buttons)."""
    keys = []
    for button in MENU["wechat_menu"]["button"]:
        for item in [button, *button.get("sub_button", ())]:
            if item.get("type") == "click":
                keys.append(item["key"])
    return keys


async def test_children_and_elderly_topics_are_reachable_from_the_custom_menu(client):
    """Every question of the children's and the elderly topics can be reached by tapping
    the custom menu, and the 儿童和养老 button lists both groups."""
    reached: dict[str, set[str]] = {}
    for key in custom_menu_keys():
        reply = await say(client, event_xml("CLICK", openid=f"tapper-{key}", key=key))
        reached[key] = set(numbered(reply).values())
    everything = set().union(*reached.values())
    questions = {faq_id: q for q, faq_id in FAQ_IDS.items()}
    topics = {t["name"]: t["faq"] for t in MENU["topics"]}
    wanted = topics["孤儿和困境儿童"] + topics["养老服务和公墓"]
    assert {questions[i] for i in wanted} <= everything
    [button] = [item for b in MENU["wechat_menu"]["button"] for item in b.get("sub_button", ())
                if item["name"] == "儿童和养老"]
    listed = reached[button["key"]]
    assert {questions[i] for i in wanted} <= listed
    reply = await say(client, event_xml("CLICK", openid="grandson", key=button["key"]))
    assert "孤儿和困境儿童" in reply and "养老服务和公墓" in reply
    choices = numbered(reply)
    last = max(choices)
    assert await ask(client, str(last), "grandson") == await ask(client, choices[last], "other")


async def test_click_contact_gives_hotline(client):
    reply = await say(client, event_xml("CLICK", openid="clicker", key="CONTACT"))
    assert county()["hotline"] in reply
    assert reply == await ask(client, "民政局电话和地址是多少？", "someone-else")


async def test_click_with_unknown_key_shows_menu(client):
    reply = await say(client, event_xml("CLICK", openid="clicker", key="NO_SUCH_KEY"))
    for line in menu_lines():
        assert line in reply


async def test_scan_shows_menu(client):
    reply = await say(client, event_xml("SCAN", openid="scanner", key="qrscene_1"))
    for line in menu_lines():
        assert line in reply


# ----- 6. dedup --------------------------------------------------------------
async def test_retried_message_gets_same_reply_and_is_processed_once(client, settings):
    xml = text_xml(OFF_TOPIC, openid="retrier", msg_id=random.randrange(10**15, 10**16))
    replies = [await post(client, xml) for _ in range(3)]
    assert [r.status for r in replies] == [200, 200, 200]
    assert len({essence(r.body) for r in replies}) == 1
    assert declined(reply_text(replies[0].body))
    assert len(await asked_rows(settings)) == 1


async def test_different_msgids_are_processed_separately(client, settings):
    for _ in range(2):
        await ask(client, OFF_TOPIC, "asker")
    assert len(await asked_rows(settings)) == 2


async def test_same_msgid_from_two_senders_is_two_messages(client, settings):
    """A MsgId is only unique per sender: another user's message with the same MsgId
    gets its own answer, never the first user's reply."""
    msg_id = random.randrange(10**15, 10**16)
    first = await post(client, text_xml(OFF_TOPIC, openid="sender-a", msg_id=msg_id))
    second = await post(client, text_xml("低保标准是多少", openid="sender-b", msg_id=msg_id))
    assert essence(first.body)[0] == "sender-a"
    assert essence(second.body)[0] == "sender-b"
    assert "7500" in reply_text(second.body)
    assert reply_text(second.body) != reply_text(first.body)


async def test_retry_reaching_another_process_gets_same_reply(aiohttp_client, settings):
    first = await aiohttp_client(create_app(settings))
    second = await aiohttp_client(create_app(settings))
    xml = text_xml(OFF_TOPIC, openid="retrier", msg_id=random.randrange(10**15, 10**16))
    a = await post(first, xml)
    b = await post(second, xml)
    assert a.status == b.status == 200
    assert essence(a.body) == essence(b.body)
    assert declined(reply_text(a.body))
    assert len(await asked_rows(settings)) == 1


async def test_simultaneous_copies_on_two_processes_are_processed_once(aiohttp_client,
                                                                       settings):
    first = await aiohttp_client(create_app(settings))
    second = await aiohttp_client(create_app(settings))
    xml = text_xml(OFF_TOPIC, openid="racer", msg_id=random.randrange(10**15, 10**16))
    a, b = await asyncio.gather(post(first, xml), post(second, xml))
    assert a.status == b.status == 200
    assert essence(a.body) == essence(b.body)
    assert declined(reply_text(a.body))
    assert len(await asked_rows(settings)) == 1


async def test_retried_safe_mode_message_gets_same_reply(client, settings):
    xml = text_xml(OFF_TOPIC, openid="secret-retrier")
    texts = []
    for _ in range(2):
        query, body = encrypted(xml)
        answer = await post(client, body, query)
        texts.append(reply_text(decrypt_reply(answer.body, query)))
    assert texts[0] == texts[1]
    assert declined(texts[0])
    assert len(await asked_rows(settings)) == 1


async def test_retried_event_gets_same_reply_and_is_processed_once(client, settings):
    xml = event_xml("subscribe", openid="event-retrier", created=int(time.time()))
    first, second = await post(client, xml), await post(client, xml)
    assert first.status == second.status == 200
    assert essence(first.body) == essence(second.body)
    assert county()["bureau_name"] in reply_text(first.body)
    assert len(await follower(settings, "event-retrier")) == 1


async def test_retried_subscribe_after_unsubscribe_changes_nothing(client, settings):
    subscribe = event_xml("subscribe", openid="flip", created=int(time.time()) - 20)
    welcome = await post(client, subscribe)
    await post(client, event_xml("unsubscribe", openid="flip", created=int(time.time()) - 10))
    retry = await post(client, subscribe)  # a late retry of the first event
    assert essence(retry.body) == essence(welcome.body)
    [row] = await follower(settings, "flip")
    assert row.following is False


async def test_two_clicks_in_the_same_second_get_their_own_replies(client, settings):
    """Two different menu taps within one second (the same CreateTime) are two events;
    WeChat's retry of one (every field repeated) is answered once, with the same reply."""
    created = int(time.time())
    reminders = await say(client, event_xml("CLICK", openid="tapper", key="PAYOUT_REMINDERS",
                                            created=created))
    topic = await say(client, event_xml("CLICK", openid="tapper", key="TOPIC_DIBAO",
                                        created=created))
    assert topic != reminders
    assert "什么是低保？" in numbered(topic).values()
    off = await say(client, event_xml("CLICK", openid="switcher", key="REMINDERS_OFF",
                                      created=created))
    menu = await say(client, event_xml("CLICK", openid="switcher", key="MENU", created=created))
    assert all(line in menu for line in menu_lines())
    assert menu != off


async def test_retried_click_is_answered_once_and_processed_once(client, settings):
    created = int(time.time())
    xml = event_xml("CLICK", openid="menu-retrier", key="TOPIC_DIBAO", created=created)
    first, retry = await post(client, xml), await post(client, xml)
    assert essence(first.body) == essence(retry.body)
    assert "什么是低保？" in numbered(reply_text(first.body)).values()
    second = await ask(client, "2", "menu-retrier")
    assert second == await ask(client, numbered(reply_text(first.body))[2], "someone-else")
    rows = await fetch(settings, select(HandledMessage.key)
                       .where(HandledMessage.key.like("e:menu-retrier:%")))
    assert len(rows) == (0 if TEST_REDIS_URL else 1)


async def test_template_job_receipts_in_the_same_second_are_two_events(client, settings):
    """Two TEMPLATESENDJOBFINISH events differ only by MsgID: neither is dropped."""
    created = int(time.time())
    replies = []
    for msg_id in (200163836, 200163837):
        xml = (f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName>"
               f"<FromUserName>{cdata('receipt-user')}</FromUserName>"
               f"<CreateTime>{created}</CreateTime><MsgType>{cdata('event')}</MsgType>"
               f"<Event>{cdata('TEMPLATESENDJOBFINISH')}</Event><MsgID>{msg_id}</MsgID>"
               f"<Status>{cdata('success')}</Status></xml>")
        replies.append(await post(client, xml))
    assert [r.body for r in replies] == ["success", "success"]
    if not TEST_REDIS_URL:
        rows = await fetch(settings, select(HandledMessage.key)
                           .where(HandledMessage.key.like("e:receipt-user:%")))
        assert len(rows) == 2


# ----- 7. conversation state across processes --------------------------------
async def test_choice_made_on_another_process_gets_the_listed_answer(aiohttp_client,
                                                                     settings):
    a = await aiohttp_client(create_app(settings))
    b = await aiohttp_client(create_app(settings))
    listing = await ask(a, "低保", "wanderer")
    assert "您是想问下面哪一个" in listing
    choices = numbered(listing)
    assert choices[0].startswith("都不是")
    assert len(choices) >= 3  # 0 plus at least two questions
    first = choices[1]
    assert first in FAQ_IDS
    answer = await ask(b, "1", "wanderer")
    assert answer == await ask(a, first, "someone-else")
    assert answer != listing
    [row] = await asked_rows(settings)
    assert row.chosen_faq_id == FAQ_IDS[first]


async def test_zero_after_did_you_mean_gives_hotline_and_is_recorded(aiohttp_client,
                                                                     settings):
    a = await aiohttp_client(create_app(settings))
    b = await aiohttp_client(create_app(settings))
    listing = await ask(a, "低保", "unsatisfied")
    assert "您是想问下面哪一个" in listing
    reply = await ask(b, "0", "unsatisfied")
    assert county()["hotline"] in reply
    [row] = await asked_rows(settings)
    assert row.chosen_faq_id == "0"


async def test_choices_belong_to_one_openid(client):
    listing = await ask(client, "低保", "chooser")
    assert "您是想问下面哪一个" in listing
    other = await ask(client, "1", "bystander")  # no list pending: topic 1 of the menu
    assert other != await ask(client, "1", "chooser")
    assert set(numbered(other).values()) >= {"什么是低保？"}


# ----- 8. deadline -----------------------------------------------------------
@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="locks a SQLite database file")
async def test_reply_past_deadline_answers_success_then_queues_it(aiohttp_client, settings):
    slow = settings.with_overrides(reply_deadline=0.3)
    client = await aiohttp_client(create_app(slow))
    path = slow.database_url.removeprefix("sqlite+aiosqlite:///")
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # readers go on (WAL), writers wait
        started = time.monotonic()
        try:
            answer = await asyncio.wait_for(
                post(client, text_xml(OFF_TOPIC, openid="patient")), 3.0)
        except TimeoutError:
            pytest.fail("no answer within 3 s while the database was write-locked")
        elapsed = time.monotonic() - started
        assert answer.status == 200
        assert answer.body == "success"
        assert elapsed < 1.2
        await asyncio.sleep(0.3)
        assert await fetch(slow, select(LateReply)) == []  # still blocked
    finally:
        if lock.in_transaction:
            lock.execute("COMMIT")
        lock.close()
    late: list[Any] = []
    for _ in range(100):
        late = [row[0] for row in await fetch(
            slow, select(LateReply).where(LateReply.openid == "patient"))]
        if late:
            break
        await asyncio.sleep(0.05)
    assert len(late) == 1
    assert declined(late[0].text)
    assert late[0].delivered_at is None
    assert late[0].text == await ask(client, OFF_TOPIC, "someone-else")
    count = await fetch(slow, select(func.count()).select_from(AskedQuestion))
    assert count[0][0] == 2
