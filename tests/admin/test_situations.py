"""Life situations edited in admin: list, add, remove; the bot reads them from the
database; `huimin init` keeps staff edits and removals; editors only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from admin.models import AuditEntry
from bot.app import load_snapshot
from content.guide import Guide
from content.load import load_county
from content.models import SituationRow
from huimin.db import Database
from huimin.settings import Settings
from huimin.wiring.cli import initialise
from tests.admin.conftest import follow, post, rows_of, signed_in

QUESTION = "家里顶梁柱倒下了咋整"


async def _bot_verdict(settings: Settings, question: str) -> tuple[str, list[str]]:
    """The band and the entries offered or answered, as a bot process builds it."""
    db = Database(settings.database_url)
    try:
        snapshot = await load_snapshot(db, load_county(settings.county_file), Guide.load())
        match = snapshot.matcher.match(question)
        return match.band.value, [c.faq_id for c in match.candidates]
    finally:
        await db.dispose()


async def test_shipped_situations_are_listed(admin_client: Any, settings: Settings) -> None:
    await signed_in(admin_client, settings, "editor")
    page = await (await admin_client.get("/admin/situations")).text()
    assert "生活情况" in page and "孤寡老人、无依无靠" in page and "没儿没女" in page


async def test_an_added_situation_changes_the_bot_s_answer(admin_client: Any,
                                                           settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    band, _ = await _bot_verdict(settings, QUESTION)
    assert band == "unknown"
    before = await (await admin_client.get("/admin/try", params={"q": QUESTION})).text()
    assert "临时救助是什么" not in before

    response = await post(admin_client, "/admin/situations/add", token, name="顶梁柱倒了",
                          cues="顶梁柱倒下, 当家的倒下", means="临时救助",
                          offer="temp-assist-what")
    assert "已加入“顶梁柱倒了”" in await follow(admin_client, response)
    band, ids = await _bot_verdict(settings, QUESTION)
    assert band in {"answer", "choices"} and ids[0] == "temp-assist-what"
    after = await (await admin_client.get("/admin/try", params={"q": QUESTION})).text()
    assert after != before and "临时救助" in after

    row = (await rows_of(settings, select(SituationRow).where(
        SituationRow.name == "顶梁柱倒了")))[0]
    assert row.cues == ["顶梁柱倒下", "当家的倒下"] and row.edited_by_admin
    response = await post(admin_client, "/admin/situations/remove", token,
                          situation_id=str(row.id))
    assert "已删除" in await follow(admin_client, response)
    assert (await _bot_verdict(settings, QUESTION))[0] == "unknown"
    actions = {a.action for a in await rows_of(settings, select(AuditEntry))}
    assert {"situation_add", "situation_remove"} <= actions


async def test_bad_situations_are_refused_with_a_reason(admin_client: Any,
                                                        settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    cases = [
        ({"name": "", "cues": "a", "offer": "tekun-what"}, "起个名字"),
        ({"name": "新的", "cues": "", "offer": "tekun-what"}, "会说的词"),
        ({"name": "新的", "cues": "没人管我"}, "至少选一个"),
        ({"name": "新的", "cues": "没人管我", "offer": "no-such-id"}, "已经不在了"),
        ({"name": "新的", "cues": "没儿没女", "offer": "tekun-what"}, "已经在“孤寡老人"),
        ({"name": "孤寡老人、无依无靠", "cues": "新说法", "offer": "tekun-what"}, "已经有了"),
    ]
    for data, message in cases:
        response = await post(admin_client, "/admin/situations/add", token, **data)
        assert message in await follow(admin_client, response), data
    bad = await post(admin_client, "/admin/situations/remove", token, situation_id="x")
    assert bad.status == 400


async def test_init_keeps_staff_removals_and_additions(admin_client: Any,
                                                       settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    shipped = (await rows_of(settings, select(SituationRow).where(
        SituationRow.name == "孤寡老人、无依无靠")))[0]
    await post(admin_client, "/admin/situations/remove", token, situation_id=str(shipped.id))
    await post(admin_client, "/admin/situations/add", token, name="顶梁柱倒了",
               cues="顶梁柱倒下", offer="temp-assist-what")
    counts = await initialise(settings)
    assert counts["situations_added"] == 0 and counts["situations_updated"] == 0
    rows = {r.name: r for r in await rows_of(settings, select(SituationRow))}
    assert rows["孤寡老人、无依无靠"].removed and not rows["顶梁柱倒了"].removed


async def test_only_content_editors_change_situations(admin_client: Any,
                                                      settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "caseworker")
    assert (await admin_client.get("/admin/situations")).status == 403
    response = await post(admin_client, "/admin/situations/add", token, name="x",
                          cues="顶梁柱倒下", offer="temp-assist-what")
    assert response.status == 403
    assert not await rows_of(settings, select(SituationRow).where(SituationRow.name == "x"))
