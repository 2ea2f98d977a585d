"""The unanswered-questions inbox: grouping, "加为问法", "新建条目", "忽略"."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from admin.inbox import TUNING, group_questions
from admin.models import AuditEntry, InboxResolution
from bot.dialog import mask_digits, mask_typed
from bot.models import AskedQuestion
from huimin.db import Database
from huimin.settings import Settings
from huimin.wiring.apps import create_app
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
    from bot.dialog import matcher_for
    from content.guide import Guide
    from content.queries import load_published

    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            content = await load_published(session)
        matcher = matcher_for(Guide.load(), content)
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
    response = await bot.post("/wechat", params=signed_query(), data=text_xml("明天会下雨吗"))
    assert response.status == 200
    # A message with a long number in it (a card, ID or phone number, perhaps with a name
    # beside it) is answered but never kept for the editors.
    response = await bot.post("/wechat", params=signed_query(),
                              data=text_xml("明天会下雨吗，卡号6228480012345678"))
    assert "6228480012345678" not in reply_text(await response.text())
    await signed_in(admin_client, settings, "editor")
    html = await (await admin_client.get("/admin/inbox")).text()
    assert "明天会下雨吗" in html and "6228480012345678" not in html and "卡号" not in html
    assert "没答上 1 次" in html


async def _store(settings: Settings, *rows: dict[str, Any]) -> list[int]:
    """Unanswered questions as the bot records them, with given candidates."""
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            added = [AskedQuestion(**{"band": "choices", "chosen_faq_id": None, **row})
                     for row in rows]
            session.add_all(added)
            await session.flush()
            return [row.id for row in added]
    finally:
        await db.dispose()


def _section(html: str, heading: str) -> str:
    return html.split(f"<h2>“{heading}”</h2>")[1].split("</section>")[0]


def _selected(section: str) -> str:
    """The value of the option the "加到" list starts on."""
    select = section.split('name="faq_id"')[1].split("</select>")[0]
    found = re.search(r'<option value="([^"]*)" selected>', select)
    assert found, "no option is selected"
    return found.group(1)


async def test_only_a_confident_suggestion_is_preselected(admin_client: Any,
                                                          settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    answer_at, margin = TUNING.answer_at, TUNING.answer_margin  # the bot's own bands
    # close to two entries, neither clearly ahead (the bot listed both)
    await _store(settings, {"text": "我娘九十了有什么补助", "candidates": [
        {"faq_id": "children-in-difficulty", "score": answer_at + 20},
        {"faq_id": "orphan-support", "score": answer_at + 20 - margin / 2}]})
    # another office's business: scores say nothing about the FAQ
    await _store(settings, {"text": "我想办离婚", "band": "referred", "candidates": [
        {"faq_id": "dibao-apply", "score": 58.6}, {"faq_id": "tekun-apply", "score": 51.4}]})
    # clearly ahead, at the score the bot answers at
    await _store(settings, {"text": "低保一个月发多少钱", "candidates": [
        {"faq_id": "dibao-standard", "score": answer_at + 2 * margin},
        {"faq_id": "dibao-payout", "score": answer_at}]})
    # users picked an entry from the "did you mean" list
    await _store(settings, *({"text": "低保几年一审", "chosen_faq_id": chosen, "candidates": [
        {"faq_id": "dibao-eligibility", "score": 44.7},
        {"faq_id": "dibao-recheck", "score": 41.4}]}
        for chosen in ("dibao-recheck", "dibao-recheck", "0")))
    html = await (await admin_client.get("/admin/inbox")).text()
    assert _selected(_section(html, "我娘九十了有什么补助")) == ""
    assert "请自己选" in _section(html, "我娘九十了有什么补助")
    assert _selected(_section(html, "我想办离婚")) == ""
    assert "别的部门的事" in _section(html, "我想办离婚")
    assert _selected(_section(html, "低保一个月发多少钱")) == "dibao-standard"
    assert _selected(_section(html, "低保几年一审")) == "dibao-recheck"
    assert "群众在“您是想问”里多数选了它" in _section(html, "低保几年一审")

    # sent without choosing: refused with a clear word, nothing published or resolved
    ids = _group_ids(html, "我娘九十了有什么补助")
    response = await post(admin_client, "/admin/inbox/alternative", token, ids=ids,
                          faq_id="", text="俺娘九十了有啥补助")
    page = await follow(admin_client, response)
    assert "还没有选要加到哪一条问答，什么也没有改" in page
    assert await _resolutions(settings) == []
    assert "<h2>“我娘九十了有什么补助”</h2>" in page


async def test_likeness_is_said_in_words_not_scores(admin_client: Any,
                                                    settings: Settings) -> None:
    await signed_in(admin_client, settings, "editor")
    choices_at = TUNING.choices_at
    assert choices_at + 1 < TUNING.answer_at
    await _store(settings, {"text": "低保是啥意思啊", "candidates": [
        {"faq_id": "dibao-what", "score": 124.0},
        {"faq_id": "dibao-apply", "score": choices_at + 1},
        {"faq_id": "contact", "score": choices_at - 10}]})
    section = _section(await (await admin_client.get("/admin/inbox")).text(), "低保是啥意思啊")
    closest = section.split("最接近的条目：")[1].split("</p>")[0]
    assert re.findall(r'<span class="likeness">(.+?)</span>', closest) == [
        "很像", "有点像", "不太像"]
    assert "分" not in closest and not re.search(r"\d", closest.replace("（", ""))


async def test_the_inbox_shows_what_people_typed(aiohttp_client: Any, admin_client: Any,
                                                 settings: Settings) -> None:
    """The words as typed (dialect, typos) are the heading; the normalised text is a
    small detail line; a message with a long number in it is not kept at all."""
    bot = await aiohttp_client(create_app(settings))
    typed = "俺娘九十了有啥补助"
    for openid in ("a", "b"):
        await bot.post("/wechat", params=signed_query(), data=text_xml(typed, openid=openid))
    await bot.post("/wechat", params=signed_query(),
                   data=text_xml("明天会下雨吗 卡号6228480012345678", openid="c"))
    await signed_in(admin_client, settings, "editor")
    html = await (await admin_client.get("/admin/inbox")).text()
    section = _section(html, typed)
    assert '<p class="normalised">公众号理解成：我娘九十了有什么补助</p>' in section
    assert f'name="text" value="{typed}"' in section
    assert "卡号" not in html and "6228480012345678" not in html


def test_typed_text_is_masked_before_it_is_stored() -> None:
    assert (mask_typed("我的身份证34132319620817004x  电话13812345678 卡6228480012345678")
            == "我的身份证3413**********004X 电话138****5678 卡****************")
    assert mask_typed("2026年低保标准") == "2026年低保标准"


async def test_referred_questions_are_counted_apart(aiohttp_client: Any, admin_client: Any,
                                                    settings: Settings) -> None:
    bot = await aiohttp_client(create_app(settings))
    for openid, question in (("a", "医保怎么报销"), ("b", "医保怎么报销"),
                             ("c", "明天会下雨吗")):
        await bot.post("/wechat", params=signed_query(),
                       data=text_xml(question, openid=openid))
    await signed_in(admin_client, settings, "editor")
    html = await (await admin_client.get("/admin/inbox")).text()
    assert "告诉去别的部门办 2 次" in _section(html, "医保怎么报销")
    assert "没答上" not in _section(html, "医保怎么报销")
    assert "没答上 1 次" in _section(html, "明天会下雨吗")
    counts = html.split('<p class="band-counts">')[1].split("</p>")[0]
    assert re.sub(r"</?strong>", "", counts) == (
        "其中没答上 1 个，列出选项让用户选 0 个，属于别的部门、已告诉群众去哪里办 2 个。")
    home = await (await admin_client.get("/admin/")).text()
    assert '<span class="number">1</span>' in home
    assert "另有 2 个是别的部门的事" in home
    assert "没答上 1 个，别的部门的事、告诉了去哪里办 2 个" in home
    assert "群众不清楚的政策" in home and "最近30天没有公众号没答好的问题" not in home


def test_no_entry_is_suggested_when_none_is_close() -> None:
    row = _row(1, "明天会下雨吗", band="unknown")
    row.candidates = [{"faq_id": "dibao-exit", "score": 21.0}]
    (group,) = group_questions([row])
    assert group.suggested_entry() is None
