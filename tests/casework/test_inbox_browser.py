"""The caseworkers' inbox (经办留言) in a real browser without script: a message left
through the bot, answered with an FAQ snippet, delivered over the fake WeChat API,
then closed with an outcome."""

from __future__ import annotations

import shutil
from typing import Any

import aiohttp
import pytest

from huimin.settings import Settings
from huimin.wiring.apps import create_admin_app, create_app
from tests.admin.conftest import PASSWORD, add_user
from tests.admin.test_browser import CHROMIUM, CHROMIUM_ARGS, async_playwright
from tests.casework.test_handoff import GRANDMA, route
from tests.fakes.wechat_server import SECRET, FakeWeChat
from tests.wechat import APPID, reply_text, signed_query, text_xml

pytestmark = [
    pytest.mark.skipif(async_playwright is None, reason="the playwright package is not installed"),
    pytest.mark.skipif(not CHROMIUM.exists() and not shutil.which("chromium"),
                       reason="no chromium browser at /usr/bin/chromium"),
]


async def _say(http: aiohttp.ClientSession, base: str, text: str) -> str:
    async with http.post(base + "/wechat", params=signed_query(),
                         data=text_xml(text, openid=GRANDMA)) as response:
        assert response.status == 200
        return reply_text(await response.text())


async def test_a_caseworker_answers_a_message_in_a_browser(aiohttp_server: Any,
                                                         settings: Settings) -> None:
    fake = FakeWeChat(appid=APPID)
    await fake.start(aiohttp_server)
    wired = settings.with_overrides(wechat_secret=SECRET, wechat_api_base=fake.base_url)
    app = create_app(wired)
    app.add_subapp("/admin", create_admin_app(wired))
    server = await aiohttp_server(app, host="127.0.0.1")
    base = str(server.make_url("")).rstrip("/")
    await add_user(wired, "desk", "caseworker")
    await route(wired, "any", "*", "desk")
    async with aiohttp.ClientSession() as http, async_playwright() as playwright:
        assert "打字或者发语音都行" in await _say(http, base, "找工作人员")
        assert "已经转给工作人员了" in await _say(http, base, "低保钱到了怎么查，我不会弄")
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
            args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(java_script_enabled=False)
            await page.goto(base + "/admin/login")
            await page.fill("#username", "desk")
            await page.fill("#password", PASSWORD)
            await page.click("button:has-text('登录')")
            await page.wait_for_url("**/admin/")
            await page.click("nav.main-nav a:has-text('经办留言')")
            row = page.locator("table.cases tbody tr", has_text="低保钱到了怎么查")
            assert "分钟" in await row.inner_text()  # how long it has waited
            await row.locator("a").first.click()
            assert "找工作人员" in await page.inner_text("main")  # the conversation before
            await page.select_option("#snippet", "yikatong")
            await page.click("button:has-text('放进回复框')")
            snippet = await page.input_value("#reply-text")
            assert snippet
            await page.fill("#reply-text", "您好，" + snippet)
            await page.click("button:has-text('发送回复')")
            await page.wait_for_selector(".flash-ok")
            assert "已通过微信发给对方" in await page.inner_text(".flash-ok")
            assert [t["touser"] for t in fake.texts] == [GRANDMA]
            assert fake.texts[0]["text"]["content"].endswith(snippet)
            await page.select_option("#outcome", "answered")
            await page.click("button:has-text('关闭这条留言')")
            await page.wait_for_selector(".flash-ok")
            assert "处理结果：已答复" in await page.inner_text(".flash-ok")
            assert "没有等着处理的留言" in await page.inner_text("main")
        finally:
            await browser.close()
            await fake.stop()
    assert fake.problems == []
