"""Demo-only pages: a WeChat look-alike chat that sends real signed messages.

Mounted only when ``HUIMIN_DEMO`` is on: ``/demo/sign`` signs with the
webhook token, which a real deployment must never hand out.
"""

from __future__ import annotations

import secrets

import jinja2
from aiohttp import web

from bot.app import BOT, SETTINGS
from bot.webhook import sign

_pages = jinja2.Environment(
    loader=jinja2.PackageLoader("bot", "templates"), autoescape=True,
    undefined=jinja2.StrictUndefined,
)
DEMO_ACCOUNT = "gh_huimin_demo"


async def chat_page(request: web.Request) -> web.Response:
    bot = request.app[BOT]
    openid = request.query.get("openid") or "demo-" + secrets.token_hex(6)
    html = _pages.get_template("demo_chat.html").render(
        account_name=bot.county.get("bureau_name", "惠民"),
        openid=openid[:64],
        menu=dict(bot.guide.wechat_menu),
        wechat_path="/wechat",
        sign_path="/demo/sign",
        account_id=DEMO_ACCOUNT,
    )
    return web.Response(text=html, content_type="text/html")


async def sign_request(request: web.Request) -> web.Response:
    try:
        data = await request.json()
        timestamp, nonce = str(data["timestamp"]), str(data["nonce"])
    except (ValueError, KeyError, TypeError):
        raise web.HTTPBadRequest(text="expected JSON {timestamp, nonce}") from None
    if not timestamp.isdigit() or not nonce.isalnum() or len(nonce) > 32:
        raise web.HTTPBadRequest(text="timestamp must be digits, nonce letters or digits")
    token = request.app[SETTINGS].wechat_token or ""
    return web.json_response({"signature": sign(token, timestamp, nonce)})


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/demo/chat")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/demo/chat", chat_page)
    app.router.add_post("/demo/sign", sign_request)
