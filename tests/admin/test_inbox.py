"""The unanswered-questions inbox: grouping, "加为问法", "新建条目", "忽略"."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from admin.inbox import group_questions
from admin.models import AuditEntry, InboxResolution
from bot.app import create_app
from bot.dialog import mask_digits
from bot.models import AskedQuestion
from huimin.db import Database
from huimin.settings import Settings
from tests.admin.conftest import follow, post, signed_in
from tests.admin.test_faq import NEW_ENTRY, _bot_reply, _unescape
from tests.wechat import reply_text, signed_query, text_xml

VAGUE = "低保可以办几年"  # the bot offers a "did you mean" list
UNKNOWN = "孩子上学有补助吗"  # the bot does not know


def _row(i: int, text: str, band: str = "choices", chosen: str | None = None,
         minutes: int = 0) -> Any:
    return SimpleNamespace(id=i, asked_at=datetime.now(UTC) - timedelta(minutes=minutes),
                           text=text, band=band, chosen_faq_id=chosen,
                           candidates=[{"faq_id": "dibao-recheck", "score": 41.0},
                                       {"faq_id": "dibao-apply", "score": 38.0}])


def test_similar_questions_are_grouped() -> None:
    rows = [_row(1, VAGUE, minutes=5), _row(2, VAGUE, chosen="dibao-recheck"),
            _row(3, "低保能办几年", band="unknown"), _row(4, "低保"),
            _row(5, UNKNOWN, band="unknown"), _row(6, "明天会下雨吗", band="unknown")]
    groups = group_questions(rows)
    first = groups[0]
    assert first.text == VAGUE and sorted(first.ids) == [1, 2, 3]
    assert first.bands == {"choices": 2, "unknown": 1}
    assert first.chosen == {"dibao-recheck": 1}
    assert first.suggested_entry() == "dibao-recheck"
    assert first.candidates(1) == [("dibao-recheck", 41.0)]
    assert first.last_asked is not None and first.last_asked > rows[0].asked_at
    # a short question inside a longer one is not the same question
    assert [g.ids for g in groups if g.text == "低保"] == [[4]]
    assert len(groups) == 4


async def _ask(settings: Settings, *texts: str) -> list[int]:
    """Record questions as the bot does (normalised text, digit runs masked)."""
    from bot.dialog import Guide
    from content.queries import load_published

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            content = await load_published(session)
        matcher = Guide.load().matcher(content)
        ids = []
        async with db.session() as session:
            for text in texts:
                match = matcher.match(text)
                row = AskedQuestion(text=mask_digits(match.normalised.text), band=match.band,
                                    candidates=[{"faq_id": c.faq_id, "score": c.score}
                                                for c in match.candidates])
                session.add(row)
                await session.flush()
                ids.append(row.id)
        return ids
    finally:
        await db.dispose()


async def _resolutions(settings: Settings) -> list[InboxResolution]:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return list((await session.scalars(select(InboxResolution))).all())
    finally:
        await db.dispose()


def _group_ids(html: str, text: str) -> str:
    section = html.split(f"<h2>“{text}”</h2>")[1].split("</section>")[0]
    return re.search(r'name="ids" value="([\d,]+)"', section).group(1)


async def test_add_as_a_phrasing_makes_the_question_match(admin_client: Any,
                                                          settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    assert (await _bot_reply(settings, VAGUE))[0] is None
    asked = await _ask(settings, VAGUE, VAGUE, "低保能办几年", UNKNOWN)
    html = await (await admin_client.get("/admin/inbox")).text()
    assert "4 个问题，分成 2 组" in html
    assert "问了 <strong>3</strong> 次" in html
    ids = _group_ids(html, VAGUE)
    assert sorted(map(int, ids.split(","))) == asked[:3]

    response = await post(admin_client, "/admin/inbox/alternative", token, ids=ids,
                          faq_id="dibao-recheck", text=VAGUE)
    page = await follow(admin_client, response)
    assert "现在这样问，公众号会直接回答这一条" in page
    assert f"“{VAGUE}”</h2>" not in page and f"“{UNKNOWN}”</h2>" in page
    faq_id, _ = await _bot_reply(settings, VAGUE)
    assert faq_id == "dibao-recheck"
    done = await _resolutions(settings)
    assert sorted(r.asked_question_id for r in done) == asked[:3]
    assert {r.action for r in done} == {"alternative"}
    db = Database(settings.database_url)
    async with db.session() as session:
        audit = (await session.scalars(select(AuditEntry).where(
            AuditEntry.action == "inbox_alternative"))).one()
    await db.dispose()
    assert audit.target_id == "dibao-recheck" and audit.after["phrasing"] == VAGUE


async def test_a_phrasing_another_entry_owns_is_refused(admin_client: Any,
                                                        settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    ids = await _ask(settings, "低保是啥")
    response = await post(admin_client, "/admin/inbox/alternative", token,
                          ids=",".join(map(str, ids)), faq_id="dibao-apply", text="低保是啥")
    page = await follow(admin_client, response)
    assert "没有加上" in page and "dibao-what" in page
    assert await _resolutions(settings) == []


async def test_dismiss(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    ids = await _ask(settings, "明天会下雨吗")
    response = await post(admin_client, "/admin/inbox/dismiss", token,
                          ids=",".join(map(str, ids)), text="明天会下雨吗")
    page = await follow(admin_client, response)
    assert "已忽略1个问题" in page and "没有待处理的问题" in page
    assert [r.action for r in await _resolutions(settings)] == ["dismissed"]
    home = await (await admin_client.get("/admin/")).text()
    assert '<span class="number">0</span>' in home


async def test_new_entry_from_the_inbox(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    ids = await _ask(settings, "低保存折丢了怎么办")
    html = await (await admin_client.get("/admin/inbox")).text()
    link = re.search(r'href="(/admin/faq/new\?[^"]+)"', html).group(1)
    form = await (await admin_client.get(_unescape(link))).text()
    assert 'value="低保存折丢了怎么办"' in form
    assert f'name="inbox" value="{ids[0]}"' in form
    response = await post(admin_client, "/admin/faq/new", token,
                          **{**NEW_ENTRY, "inbox": str(ids[0]), "action": "publish"})
    assert "已发布" in await follow(admin_client, response)
    done = await _resolutions(settings)
    assert [(r.action, r.faq_id) for r in done] == [("new_entry", "dibao-card-lost")]


async def test_questions_the_bot_could_not_answer_reach_the_inbox(
        aiohttp_client: Any, admin_client: Any, settings: Settings) -> None:
    bot = await aiohttp_client(create_app(settings))
    response = await bot.post("/wechat", params=signed_query(),
                              data=text_xml(UNKNOWN + "，我家电话13812345678"))
    assert "0000-1234567" in reply_text(await response.text())
    await signed_in(admin_client, settings, "editor")
    html = await (await admin_client.get("/admin/inbox")).text()
    assert UNKNOWN in html and "13812345678" not in html
    assert "没答上 1 次" in html


def test_no_entry_is_suggested_when_none_is_close() -> None:
    row = _row(1, "明天会下雨吗", band="unknown")
    row.candidates = [{"faq_id": "dibao-exit", "score": 21.0}]
    (group,) = group_questions([row])
    assert group.suggested_entry() is None
