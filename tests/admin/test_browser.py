"""One real browser session (Playwright + Debian's chromium) against the demo process:
the bot app with the admin UI mounted at /admin.

Skipped, with the reason, when the playwright package or /usr/bin/chromium is missing.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from huimin.settings import Settings
from huimin.wiring.apps import create_admin_app, create_app
from tests.admin.conftest import DEMO, DEMO_ID, PASSWORD, add_user, load_demo, mounted
from tests.admin.test_faq import _bot_reply
from tests.wechat import reply_text, signed_query, text_xml

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
NEW_ANSWER = "浏览器测试：带上户口本和身份证，到乡镇政府申请低保。"
VAGUE = "低保可以办几年"

try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(async_playwright is None,
                       reason="the playwright package is not installed "
                              "(pip install playwright)"),
    pytest.mark.skipif(not CHROMIUM.exists() and not shutil.which("chromium"),
                       reason="no chromium browser at /usr/bin/chromium "
                              "(apt-get install chromium)"),
]


async def _ask(http: aiohttp.ClientSession, base: str, question: str, openid: str) -> str:
    async with http.post(base + "/wechat", params=signed_query(),
                         data=text_xml(question, openid=openid)) as response:
        assert response.status == 200
        return reply_text(await response.text())


async def _wait_for(http: aiohttp.ClientSession, base: str, question: str, expected: str,
                    seconds: float = 6.0) -> float:
    """Ask until the bot gives ``expected``; returns how long that took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    attempt = 0
    while True:
        attempt += 1
        reply = await _ask(http, base, question, f"browser-{attempt}")
        if reply == expected:
            return loop.time() - start
        assert loop.time() - start < seconds, f"still answering {reply!r}"
        await asyncio.sleep(0.25)


async def test_edit_publish_and_inbox_in_a_browser(aiohttp_server: Any,
                                                   settings: Settings) -> None:
    demo = settings.with_overrides(demo=True)
    app = create_app(demo)
    # the demo may already mount the admin UI; otherwise mount it as the demo does
    if not any(getattr(r, "canonical", None) == "/admin" for r in app.router.resources()):
        app.add_subapp("/admin", create_admin_app(demo))
    server = await aiohttp_server(app, host="127.0.0.1")
    base = str(server.make_url("")).rstrip("/")
    await add_user(demo, "editor", "editor")

    async with aiohttp.ClientSession() as http, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
            args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(base + "/admin/faq")
            assert "/admin/login" in page.url
            await page.fill("#username", "editor")
            await page.fill("#password", PASSWORD)
            await page.click("button:has-text('登录')")
            await page.wait_for_url("**/admin/faq")

            # find the entry, change its answer, publish
            await page.fill("#q", "申请低保")
            await page.click("button:has-text('查找')")
            await page.click("a:has-text('怎么申请低保？')")
            await page.wait_for_url("**/admin/faq/dibao-apply")
            await page.fill("#f-answer", NEW_ANSWER)
            await page.click("button[value=publish]")
            await page.wait_for_selector(".flash-ok")
            assert "已发布 dibao-apply" in await page.inner_text(".flash-ok")
            took = await _wait_for(http, base, "低保怎么申请", NEW_ANSWER)
            assert took < 6.0

            # the try panel on the edit page answers with the published text
            await page.fill("#try-q", "低保怎么申请")
            await page.click("button:has-text('试一试')")
            assert NEW_ANSWER in await page.inner_text("#try-result")

            # an unanswered question becomes a phrasing of an entry
            assert "您是想问" in await _ask(http, base, VAGUE, "villager")
            await page.click("nav.main-nav a:has-text('未答问题')")
            group = page.locator("section.group", has_text=VAGUE)
            await group.locator("select[name=faq_id]").select_option("dibao-recheck")
            await group.locator("button:has-text('加为这一条的问法')").click()
            await page.wait_for_selector(".flash-ok")
            assert "现在这样问，公众号会直接回答这一条" in await page.inner_text(".flash-ok")
            _, expected = await _bot_reply(demo, VAGUE)
            assert "您是想问" not in expected
            await _wait_for(http, base, VAGUE, expected)
        finally:
            await browser.close()


async def _launch(playwright: Any) -> Any:
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
        args=CHROMIUM_ARGS)


async def _sign_in(page: Any, base: str, username: str) -> None:
    await page.goto(base + "/admin/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button:has-text('登录')")
    await page.wait_for_url("**/admin/")


async def test_caseworker_pages_in_a_browser(aiohttp_server: Any, settings: Settings) -> None:
    """The dashboard's charts are drawn, a stage is changed and a list is checked, in a
    real browser (no script is needed for any of it)."""
    await load_demo(settings)
    server = await aiohttp_server(mounted(settings), host="127.0.0.1")
    base = str(server.make_url("")).rstrip("/")
    await add_user(settings, "case", "caseworker")
    async with async_playwright() as playwright:
        browser = await _launch(playwright)
        try:
            page = await browser.new_page(java_script_enabled=False)
            await _sign_in(page, base, "case")
            charts = page.locator("figure.chart svg")
            assert await charts.count() == 2
            box = await charts.first.bounding_box()
            assert box is not None and box["width"] > 500 and box["height"] > 150

            await page.click("nav.main-nav a:has-text('救助对象')")
            await page.click("a:has-text('LZ-2026-0017')")
            assert "3413**********004X" in await page.inner_text("main")
            await page.select_option("#stage", "公示")
            await page.click("#stage-form button:has-text('保存')")
            await page.wait_for_selector(".flash-ok")
            assert "环节已改为“公示”" in await page.inner_text(".flash-ok")
            assert "审核 → 公示" in await page.inner_text("main")

            await page.goto(base + "/admin/registry/import")
            await page.set_input_files("#file", str(DEMO / "applications.csv"))
            await page.click("button:has-text('上传并检查')")
            await page.wait_for_selector("#preview")
            text = await page.inner_text("#preview")
            # the demo list is older than the change just made: it asks, it does not undo
            assert "要您确认 1 份" in text and "环节会从“公示”退回“审核”" in text
            assert DEMO_ID not in await page.content()
        finally:
            await browser.close()


async def test_what_a_clerk_stumbled_on_in_a_browser(aiohttp_server: Any,
                                                    settings: Settings) -> None:
    """Issue 11's last items, in a real browser without script: an older list asks
    before undoing a stage set here (and imports it only when ticked); the person who
    phones in is found by full ID number, phone number or name; a family member is
    granted access by the code the bot gave them; the payouts page before any payout
    list has no plan button; a skipped reminder says why it was not sent."""
    from huimin.db import Database
    from huimin.registry.models import Application
    from notify.models import OutboxMessage

    ids = await load_demo(settings)
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            wang = await session.get(Application, ids["LZ-2026-0009"])
            assert wang is not None
            session.add(OutboxMessage(key="skipped-1", kind="payout", params={},
                                      beneficiary_id=wang.beneficiary_id, state="skipped",
                                      last_error="opted out"))
    finally:
        await db.dispose()
    app = create_app(settings)
    app.add_subapp("/admin", create_admin_app(settings))
    server = await aiohttp_server(app, host="127.0.0.1")
    base = str(server.make_url("")).rstrip("/")
    await add_user(settings, "case", "caseworker")
    family = "oFamilyOfZhang0123456789abcd"
    async with aiohttp.ClientSession() as http, async_playwright() as playwright:
        browser = await _launch(playwright)
        try:
            page = await browser.new_page(java_script_enabled=False)
            await _sign_in(page, base, "case")

            # 12: the person who phones in, by full ID number, phone number and name
            await page.goto(base + "/admin/registry")
            for typed in (DEMO_ID, "138 0013 8000", "张桂兰"):
                await page.fill("#q", typed)
                await page.click("button:has-text('查找')")
                text = await page.inner_text("main")
                assert "共 1 份申请" in text and "LZ-2026-0017" in text, typed
                assert "/admin/registry?" not in page.url or DEMO_ID not in page.url
                assert DEMO_ID not in await page.content()
                assert "13800138000" not in await page.content()

            # 11: a stage set here, then the older demo list
            await page.goto(base + f"/admin/registry/applications/{ids['LZ-2026-0017']}")
            await page.select_option("#stage", "公示")
            await page.click("#stage-form button:has-text('保存')")
            await page.wait_for_selector(".flash-ok")
            await page.goto(base + "/admin/registry/import")
            await page.set_input_files("#file", str(DEMO / "applications.csv"))
            await page.click("button:has-text('上传并检查')")
            await page.wait_for_selector("#conflicts")
            assert "环节会从“公示”退回“审核”" in await page.inner_text("#conflicts")
            await page.click("button:has-text('确认导入')")  # not ticked
            await page.wait_for_selector("text=导入完成")
            assert "要确认后才导入" in await page.inner_text("main")
            await page.goto(base + f"/admin/registry/applications/{ids['LZ-2026-0017']}")
            assert "审核 → 公示" in await page.inner_text("main")
            assert "公示 → 审核" not in await page.inner_text("main")
            await page.goto(base + "/admin/registry/import")
            await page.set_input_files("#file", str(DEMO / "applications.csv"))
            await page.click("button:has-text('上传并检查')")
            await page.check("#conflicts input[name=confirm]")  # ticked this time
            await page.click("button:has-text('确认导入')")
            await page.wait_for_selector("text=导入完成")
            await page.goto(base + f"/admin/registry/applications/{ids['LZ-2026-0017']}")
            assert "公示 → 审核" in await page.inner_text("main")

            # 13: the family member asks the bot for a code and reads it to the clerk
            reply = await _ask(http, base, "我的授权码", family)
            code = reply.split("您的授权码：")[1].split()[0]
            await page.fill("#code", code.lower())
            await page.click("#delegate-form button:has-text('授权')")
            await page.wait_for_selector(".flash-ok")
            assert "授权码对上了" in await page.inner_text(".flash-ok")
            assert "【低保】" in await _ask(http, base, "查进度", family)

            # 14: the payouts page before any payout list; a skipped reminder
            await page.goto(base + "/admin/payouts")
            plan = await page.inner_text("#plan")
            assert "还没有导入过发放名单" in plan and "都已经排过了" not in plan
            assert await page.locator("#plan button").count() == 0
            await page.goto(base + "/admin/reminders")
            assert "没有发（本人已退订提醒）" in await page.inner_text("main")
        finally:
            await browser.close()


PHONE = {"width": 390, "height": 844}


async def _fits(page: Any) -> tuple[int, int]:
    """The page's scroll width and the screen width."""
    return await page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]")


async def test_the_staff_ui_fits_a_phone(aiohttp_server: Any, settings: Settings,
                                         tmp_path: Path) -> None:
    """At 390 x 844 the menu is one row until opened, and the registry list, the inbox,
    the overview and the audit log never make the page wider than the screen (wide
    tables scroll inside their own box). No script is needed."""
    from bot.models import AskedQuestion
    from huimin.db import Database

    await load_demo(settings)
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            session.add(AskedQuestion(
                text="我娘九十了有什么补助", typed="俺娘九十了有啥补助俺娘一个人在家没人管咋整",
                band="choices", candidates=[{"faq_id": "children-in-difficulty", "score": 65.0},
                                            {"faq_id": "orphan-support", "score": 57.7}]))
    finally:
        await db.dispose()
    server = await aiohttp_server(mounted(settings), host="127.0.0.1")
    base = str(server.make_url("")).rstrip("/")
    await add_user(settings, "admin", "admin")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
            args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport=PHONE, java_script_enabled=False)
            await page.goto(base + "/admin/login")
            await page.fill("#username", "admin")
            await page.fill("#password", PASSWORD)
            await page.click("button:has-text('登录')")
            await page.wait_for_url("**/admin/")

            await page.goto(base + "/admin/registry")
            nav = page.locator("nav.main-nav")
            label = page.locator("nav.main-nav .nav-label")
            box = await nav.bounding_box()
            assert box is not None and box["height"] <= 1.5 * (await label.bounding_box())[
                "height"], box  # one row: the label alone
            assert await label.is_visible() and "救助对象" in await label.inner_text()
            assert not await page.locator("nav.main-nav a:has-text('未答问题')").is_visible()
            header = await page.locator("header.top").bounding_box()
            assert header is not None and header["height"] < 60, header
            scroll, screen = await _fits(page)
            assert scroll <= screen, (scroll, screen)
            table = page.locator("main table").first
            own = await table.evaluate("t => [t.scrollWidth, t.clientWidth]")
            assert own[1] <= screen
            await page.screenshot(path=str(tmp_path / "registry.png"), full_page=True)

            # the menu opens in place and leads on
            await label.click()
            await page.screenshot(path=str(tmp_path / "menu.png"))
            await page.click("nav.main-nav a:has-text('未答问题')")
            await page.wait_for_url("**/admin/inbox")
            assert "俺娘九十了有啥补助" in await page.inner_text("main")
            scroll, screen = await _fits(page)
            assert scroll <= screen, (scroll, screen)
            await page.screenshot(path=str(tmp_path / "inbox.png"), full_page=True)

            for path in ("/admin/", "/admin/audit", "/admin/faq", "/admin/reminders"):
                await page.goto(base + path)
                scroll, screen = await _fits(page)
                assert scroll <= screen, (path, scroll, screen)
            await page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)

            # on a wide screen the menu is the usual row of links, no toggle
            await page.set_viewport_size({"width": 1280, "height": 800})
            assert not await label.is_visible()
            assert await page.locator("nav.main-nav a:has-text('未答问题')").is_visible()
        finally:
            await browser.close()
