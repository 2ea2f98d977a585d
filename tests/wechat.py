"""Build requests exactly as WeChat's servers send them (plain, compatible, safe mode)."""

from __future__ import annotations

import random
import time
from urllib.parse import urlencode

from wechatpy.crypto import WeChatCrypto

from bot.webhook import sign

TOKEN = "huimintest"
APPID = "wx0123456789abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ACCOUNT = "gh_test_account"


def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_xml(content: str, openid: str = "user-1", msg_id: int | None = None,
             created: int | None = None) -> str:
    msg_id = msg_id if msg_id is not None else random.randrange(10**15, 10**16)
    return (f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName>"
            f"<FromUserName>{cdata(openid)}</FromUserName>"
            f"<CreateTime>{created or int(time.time())}</CreateTime>"
            f"<MsgType>{cdata('text')}</MsgType><Content>{cdata(content)}</Content>"
            f"<MsgId>{msg_id}</MsgId></xml>")


def voice_xml(recognition: str | None, openid: str = "user-1") -> str:
    rec = f"<Recognition>{cdata(recognition)}</Recognition>" if recognition is not None else ""
    return (f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName>"
            f"<FromUserName>{cdata(openid)}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{cdata('voice')}</MsgType>"
            f"<MediaId>{cdata('media-1')}</MediaId><Format>{cdata('amr')}</Format>{rec}"
            f"<MsgId>{random.randrange(10**15, 10**16)}</MsgId></xml>")


def media_xml(kind: str, openid: str = "user-1") -> str:
    extra = {
        "image": f"<PicUrl>{cdata('http://example.invalid/p.jpg')}</PicUrl>"
                 f"<MediaId>{cdata('m')}</MediaId>",
        "video": f"<MediaId>{cdata('m')}</MediaId><ThumbMediaId>{cdata('t')}</ThumbMediaId>",
        "location": "<Location_X>33.1</Location_X><Location_Y>116.5</Location_Y>"
                    f"<Scale>15</Scale><Label>{cdata('娄庄镇')}</Label>",
        "link": f"<Title>{cdata('标题')}</Title><Description>{cdata('描述')}</Description>"
                f"<Url>{cdata('http://example.invalid/')}</Url>",
    }[kind]
    return (f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName>"
            f"<FromUserName>{cdata(openid)}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{cdata(kind)}</MsgType>"
            f"{extra}<MsgId>{random.randrange(10**15, 10**16)}</MsgId></xml>")


def event_xml(event: str, openid: str = "user-1", key: str | None = None,
              created: int | None = None) -> str:
    key_xml = f"<EventKey>{cdata(key)}</EventKey>" if key is not None else ""
    return (f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName>"
            f"<FromUserName>{cdata(openid)}</FromUserName>"
            f"<CreateTime>{created or int(time.time())}</CreateTime>"
            f"<MsgType>{cdata('event')}</MsgType><Event>{cdata(event)}</Event>{key_xml}</xml>")


def signed_query(token: str = TOKEN, timestamp: int | None = None, nonce: str | None = None,
                 **extra: str) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    nonce = nonce or str(random.randrange(10**8, 10**9))
    return {"signature": sign(token, ts, nonce), "timestamp": ts, "nonce": nonce,
            "openid": "user-1", **extra}


def encrypted(xml: str, compatible: bool = False) -> tuple[dict[str, str], str]:
    """A safe-mode (or compatible-mode) request: query and body as WeChat sends them."""
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    ts, nonce = str(int(time.time())), str(random.randrange(10**8, 10**9))
    envelope = crypto.encrypt_message(xml, nonce, ts)
    from defusedxml.ElementTree import fromstring

    encrypt = fromstring(envelope).findtext("Encrypt")
    inner = xml[len("<xml>"):-len("</xml>")] if compatible else ""
    body = f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName>{inner}" \
           f"<Encrypt>{cdata(encrypt)}</Encrypt></xml>"
    query = signed_query(timestamp=int(ts), nonce=nonce, encrypt_type="aes",
                         msg_signature=sign(TOKEN, ts, nonce, encrypt))
    return query, body


def decrypt_reply(body: str, query: dict[str, str]) -> str:
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    from defusedxml.ElementTree import fromstring

    root = fromstring(body)
    return crypto.decrypt_message(body, root.findtext("MsgSignature"),
                                  root.findtext("TimeStamp"), root.findtext("Nonce"))


def reply_text(body: str) -> str:
    """The text content of a passive reply ('' for 'success')."""
    if body in ("", "success"):
        return ""
    from defusedxml.ElementTree import fromstring

    return fromstring(body).findtext("Content") or ""


def urlq(query: dict[str, str]) -> str:
    return urlencode(query)
