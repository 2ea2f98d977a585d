"""FAQ editing: drafts leave the bot alone, publishing reaches it, versions, revert,
errors beside the fields, new entries, "试一试", the dictionary, import and export."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import zipfile
from typing import Any

import aiohttp
import yaml
from sqlalchemy import func, select

from admin.faq import WORDING, FieldError, diff, explain
from admin.models import AuditEntry, FaqDraft, FaqVersion
from bot.app import BOT, load_snapshot
from bot.dialog import reply_to_match
from content.guide import Guide
from content.load import dump_yaml, load_county
from content.models import ContentRevision, DictionaryRow, FaqEntryRow
from content.schema import MESSAGES, problem
from huimin.db import Database
from huimin.settings import Settings
from huimin.wiring.apps import create_app
from huimin.wiring.cli import initialise
from tests.admin.conftest import follow, mounted, post, signed_in

ENTRY = "dibao-apply"
QUESTION = "低保怎么申请"
NEW_ANSWER = "带上身份证和户口本，到村委会或乡镇政府递交申请。电话：{{ county.hotline }}。"


async def _bot_reply(settings: Settings, question: str) -> tuple[str | None, str]:
    """What the bot says, from a freshly built snapshot exactly as a bot process builds it."""
    db = Database(settings.database_url)
    try:
        guide, county = Guide.load(), load_county(settings.county_file)
        snapshot = await load_snapshot(db, county, guide)
        match = snapshot.matcher.match(question)
        return match.faq_id, reply_to_match(match, snapshot, county, guide)
    finally:
        await db.dispose()


async def _scalar(settings: Settings, query: Any) -> Any:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return await session.scalar(query)
    finally:
        await db.dispose()


async def _all(settings: Settings, query: Any) -> list[Any]:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return list((await session.scalars(query)).all())
    finally:
        await db.dispose()


def _revision() -> Any:
    return select(func.max(ContentRevision.id))


async def _form(client: Any, entry_id: str) -> dict[str, str]:
    """The edit form's current values, as the browser would send them back."""
    html = await (await client.get(f"/admin/faq/{entry_id}")).text()
    values = {}
    for name in ("category", "question", "source", "reviewed"):
        tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', html)
        found = re.search(r'value="([^"]*)"', tag.group(0)) if tag else None
        values[name] = _unescape(found.group(1)) if found else ""
    for name in ("alternatives", "keywords", "answer", "details"):
        found = re.search(rf'name="{name}"[^>]*>(.*?)</textarea>', html, re.S)
        values[name] = _unescape(found.group(1)) if found else ""
    return values


def _unescape(text: str) -> str:
    return (text.replace("&#34;", '"').replace("&#39;", "'").replace("&lt;", "<")
            .replace("&gt;", ">").replace("&amp;", "&"))


# ----- draft and publish ----------------------------------------------------------------
async def test_a_draft_does_not_change_the_bot_until_it_is_published(
        admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    faq_id, before = await _bot_reply(settings, QUESTION)
    assert faq_id == ENTRY and "身份证和户口本" not in before
    revision = await _scalar(settings, _revision())

    form = await _form(admin_client, ENTRY)
    response = await post(admin_client, f"/admin/faq/{ENTRY}", token,
                          **{**form, "answer": NEW_ANSWER, "action": "save"})
    assert "草稿已保存" in await follow(admin_client, response)
    assert await _scalar(settings, _revision()) == revision
    assert (await _bot_reply(settings, QUESTION))[1] == before
    draft = await _scalar(settings, select(FaqDraft).where(FaqDraft.entry_id == ENTRY))
    assert draft.data["answer"] == NEW_ANSWER and draft.updated_by == "editor"
    page = await (await admin_client.get(f"/admin/faq/{ENTRY}")).text()
    assert "有草稿" in page and "草稿和正在使用的内容相比" in page

    response = await post(admin_client, f"/admin/faq/{ENTRY}", token,
                          **{**form, "answer": NEW_ANSWER, "action": "publish"})
    assert "已发布 dibao-apply（第2版）" in await follow(admin_client, response)
    assert await _scalar(settings, _revision()) > revision
    faq_id, after = await _bot_reply(settings, QUESTION)
    assert faq_id == ENTRY
    assert after == "带上身份证和户口本，到村委会或乡镇政府递交申请。电话：0000-1234567。"
    row = await _scalar(settings, select(FaqEntryRow).where(FaqEntryRow.id == ENTRY))
    assert row.edited_by_admin and row.answer == NEW_ANSWER
    assert await _scalar(settings, select(FaqDraft).where(FaqDraft.entry_id == ENTRY)) is None
    versions = await _all(settings, select(FaqVersion).order_by(FaqVersion.version))
    assert [(v.version, v.published_by) for v in versions] == [(1, "系统"), (2, "editor")]
    assert versions[1].data["answer"] == NEW_ANSWER and versions[1].data["reviewed"]

    # `huimin init` (shipped content) keeps the bureau's edit
    await initialise(settings)
    assert (await _bot_reply(settings, QUESTION))[1] == after


async def test_the_running_bot_picks_up_a_publish(aiohttp_client: Any,
                                                  settings: Settings) -> None:
    bot_app = create_app(settings)
    await aiohttp_client(bot_app)
    admin = await aiohttp_client(mounted(settings))
    token = await signed_in(admin, settings, "editor")
    form = await _form(admin, ENTRY)
    await post(admin, f"/admin/faq/{ENTRY}", token,
               **{**form, "answer": NEW_ANSWER, "action": "publish"})
    bot = bot_app[BOT]
    for _ in range(60):
        if "身份证和户口本" in bot.snapshot.answers[ENTRY]:
            break
        await asyncio.sleep(0.1)
    assert "身份证和户口本" in bot.snapshot.answers[ENTRY]


async def test_errors_are_shown_beside_the_field(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    form = await _form(admin_client, ENTRY)
    revision = await _scalar(settings, _revision())
    taken = "低保是啥"  # a phrasing of dibao-what
    response = await post(admin_client, f"/admin/faq/{ENTRY}", token, **{
        **form, "alternatives": form["alternatives"] + "\n" + taken,
        "answer": "很长的答案" * 50, "action": "publish"})
    assert response.status == 400
    html = await response.text()
    alternatives = html.split('id="f-alternatives"')[1].split('id="f-keywords"')[0]
    assert "问法“低保是啥”已经用在条目 dibao-what 里了" in alternatives
    answer = html.split('id="f-answer"')[1].split('id="f-details"')[0]
    assert "最多200个字" in answer
    assert "还不能发布" in html
    assert await _scalar(settings, _revision()) == revision  # nothing published
    draft = await _scalar(settings, select(FaqDraft).where(FaqDraft.entry_id == ENTRY))
    assert taken in draft.data["alternatives"]  # the typing is kept as a draft


async def test_too_few_phrasings_and_bad_dates_are_explained(admin_client: Any,
                                                             settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    form = await _form(admin_client, ENTRY)
    response = await post(admin_client, f"/admin/faq/{ENTRY}", token, **{
        **form, "alternatives": "低保咋申请\n低保去哪申请", "reviewed": "去年",
        "action": "publish"})
    html = await response.text()
    assert response.status == 400
    assert "审核日期要写成 2026-11-28 这样" in html.split('id="f-reviewed"')[1]
    # the date is checked first; once it is right, the number of phrasings is
    response = await post(admin_client, f"/admin/faq/{ENTRY}", token, **{
        **form, "alternatives": "低保咋申请\n低保去哪申请", "action": "publish"})
    html = await response.text()
    assert "其他问法至少要8种，现在只有2种" in html.split('id="f-alternatives"')[1]


async def test_history_diff_and_revert(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    _, original = await _bot_reply(settings, QUESTION)
    form = await _form(admin_client, ENTRY)
    await post(admin_client, f"/admin/faq/{ENTRY}", token,
               **{**form, "answer": NEW_ANSWER, "action": "publish"})
    history = await (await admin_client.get(f"/admin/faq/{ENTRY}/history")).text()
    assert "第2版（正在使用）" in history and "第2版比第1版改了什么" in history
    assert 'class="diff-add"' in history and "身份证和户口本" in history
    assert 'class="diff-del"' in history

    response = await post(admin_client, f"/admin/faq/{ENTRY}/revert", token, version="1")
    assert "已恢复为第1版的内容，并发布为第3版" in await follow(admin_client, response)
    assert (await _bot_reply(settings, QUESTION))[1] == original
    versions = await _all(settings, select(FaqVersion).order_by(FaqVersion.version))
    assert versions[2].note == "恢复到第1版"
    assert versions[2].data["answer"] == versions[0].data["answer"]
    actions = [a.action for a in await _all(settings, select(AuditEntry))]
    assert "faq_revert" in actions


def test_diff_marks_added_and_removed_lines() -> None:
    old = {"question": "低保", "alternatives": ["a", "b", "c"], "answer": "一\n二"}
    new = {"question": "低保", "alternatives": ["a", "c", "d"], "answer": "一\n三"}
    changes = {c.field: c.lines for c in diff(old, new)}
    assert set(changes) == {"alternatives", "answer"}
    assert changes["alternatives"] == [("same", "a"), ("del", "b"), ("same", "c"),
                                       ("add", "d")]
    assert changes["answer"] == [("same", "一"), ("del", "二"), ("add", "三")]


async def test_discarding_a_draft(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    form = await _form(admin_client, ENTRY)
    await post(admin_client, f"/admin/faq/{ENTRY}", token,
               **{**form, "answer": NEW_ANSWER, "action": "save"})
    response = await post(admin_client, f"/admin/faq/{ENTRY}/discard", token)
    assert "草稿已放弃" in await follow(admin_client, response)
    assert await _scalar(settings, select(FaqDraft)) is None


# ----- new entries ----------------------------------------------------------------------
NEW_ENTRY = {
    "id": "dibao-card-lost",
    "file": "dibao.yaml",
    "category": "低保",
    "question": "低保存折丢了怎么办？",
    "alternatives": "\n".join([
        "低保存折丢了咋办", "低保折子不见了", "存折丢了低保钱咋领", "低保存折找不着了",
        "俺的低保存折丢了", "低保存折掉了怎么补", "低保折子丢了去哪补办", "存折被偷了低保咋办",
    ]),
    "keywords": "存折丢了\n补办存折",
    "answer": "存折丢了，先打银行电话挂失，再带身份证到银行补办。补办后告诉村里新存折号。",
    "details": "",
    "source": "本局",
    "reviewed": "2026-11-28",
}


async def test_create_a_new_entry(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    bad = await post(admin_client, "/admin/faq/new", token,
                     **{**NEW_ENTRY, "id": "Dibao Card", "action": "save"})
    assert bad.status == 400
    assert "编号只能用小写英文字母和数字" in (await bad.text()).split('id="f-id"')[1]
    taken = await post(admin_client, "/admin/faq/new", token,
                       **{**NEW_ENTRY, "id": ENTRY, "action": "save"})
    assert "这个编号已经有条目在用了" in await taken.text()

    few = await post(admin_client, "/admin/faq/new", token, **{
        **NEW_ENTRY, "alternatives": "低保存折丢了咋办", "action": "publish"})
    assert few.status == 400
    assert "其他问法至少要8种" in await few.text()
    assert (await _bot_reply(settings, "低保折子不见了"))[0] != "dibao-card-lost"
    listing = await (await admin_client.get("/admin/faq")).text()
    assert "还没发布的新条目" in listing and "dibao-card-lost" in listing

    form = await _form(admin_client, "dibao-card-lost")
    response = await post(admin_client, "/admin/faq/dibao-card-lost", token, **{
        **form, "alternatives": NEW_ENTRY["alternatives"], "action": "publish"})
    assert "已发布 dibao-card-lost（第1版）" in await follow(admin_client, response)
    faq_id, reply = await _bot_reply(settings, "低保折子不见了")
    assert faq_id == "dibao-card-lost" and reply.startswith("存折丢了")
    row = await _scalar(settings, select(FaqEntryRow).where(
        FaqEntryRow.id == "dibao-card-lost"))
    assert row.file == "content/faq/dibao.yaml" and row.edited_by_admin


# ----- search and try -----------------------------------------------------------------------
async def test_list_search_and_category(admin_client: Any, settings: Settings) -> None:
    await signed_in(admin_client, settings, "editor")
    html = await (await admin_client.get("/admin/faq", params={"q": "低包是啥东西"})).text()
    assert "dibao-what" in html and "找到 1 条" in html
    html = await (await admin_client.get("/admin/faq", params={"category": "殡葬"})).text()
    assert "cemetery" in html and "dibao-what" not in html


async def test_try_uses_the_draft_on_the_edit_page(admin_client: Any,
                                                   settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    page = await (await admin_client.get("/admin/try", params={"q": QUESTION})).text()
    assert "直接回答" in page and ENTRY in page
    form = await _form(admin_client, ENTRY)
    await post(admin_client, f"/admin/faq/{ENTRY}", token,
               **{**form, "answer": NEW_ANSWER, "action": "save"})
    edit = await (await admin_client.get(f"/admin/faq/{ENTRY}",
                                         params={"q": QUESTION})).text()
    reply = edit.split('class="reply"')[-1]
    assert "带上身份证和户口本" in reply and "0000-1234567" in reply
    published = await (await admin_client.get("/admin/try", params={"q": QUESTION})).text()
    assert "带上身份证和户口本" not in published
    vague = await (await admin_client.get("/admin/try", params={"q": "低保"})).text()
    assert "列出几条让用户选" in vague and "您是想问" in vague


# ----- dictionary -----------------------------------------------------------------------------
async def test_dictionary_add_change_remove(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    revision = await _scalar(settings, _revision())
    response = await post(admin_client, "/admin/dictionary/add", token,
                          kind="replacement", term="底薪保障", replacement="低保")
    assert "已加入" in await follow(admin_client, response)
    row = await _scalar(settings, select(DictionaryRow).where(DictionaryRow.term == "底薪保障"))
    assert row.replacement == "低保" and row.edited_by_admin
    assert await _scalar(settings, _revision()) > revision

    response = await post(admin_client, "/admin/dictionary/change", token,
                          term_id=str(row.id), replacement="最低生活保障")
    assert "已修改" in await follow(admin_client, response)
    same = await post(admin_client, "/admin/dictionary/add", token,
                      kind="replacement", term="低保", replacement="低保")
    assert "不能和原来的词一样" in await follow(admin_client, same)
    response = await post(admin_client, "/admin/dictionary/remove", token,
                          term_id=str(row.id))
    assert "已删除" in await follow(admin_client, response)
    assert await _scalar(settings, select(DictionaryRow).where(
        DictionaryRow.term == "底薪保障")) is None
    filler = await post(admin_client, "/admin/dictionary/add", token, kind="filler",
                        term="我跟你讲")
    assert "已加入语气词" in await follow(admin_client, filler)
    actions = [a.action for a in await _all(settings, select(AuditEntry))]
    assert {"dictionary_add", "dictionary_change", "dictionary_remove"} <= set(actions)


async def test_a_dictionary_word_changes_matching(admin_client: Any,
                                                  settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    question = "咪咪保咋申请"
    assert (await _bot_reply(settings, question))[0] != ENTRY
    await post(admin_client, "/admin/dictionary/add", token, kind="replacement",
               term="咪咪保", replacement="低保")
    assert (await _bot_reply(settings, question))[0] == ENTRY


# ----- import and export ---------------------------------------------------------------------
async def test_export_then_import_a_changed_file(admin_client: Any,
                                                 settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    response = await admin_client.get("/admin/export")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(await response.read()))
    names = set(archive.namelist())
    assert {"faq/dibao.yaml", "dictionary.yaml"} <= names
    entries = yaml.safe_load(archive.read("faq/dibao.yaml"))
    for entry in entries:
        if entry["id"] == ENTRY:
            entry["answer"] = NEW_ANSWER
    changed = dump_yaml(entries).encode()
    form = aiohttp.FormData()
    form.add_field("csrf", token)
    form.add_field("file", changed, filename="dibao.yaml", content_type="application/x-yaml")
    preview = await admin_client.post("/admin/import", data=form)
    html = await preview.text()
    assert preview.status == 200, html
    assert "有改动 1 条" in html and "身份证和户口本" in html
    assert (await _bot_reply(settings, QUESTION))[1] != NEW_ANSWER  # preview only
    text = re.search(r'<textarea name="text" hidden>(.*?)</textarea>', html, re.S).group(1)
    response = await post(admin_client, "/admin/import/publish", token,
                          file_name="dibao.yaml", text=_unescape(text))
    assert "已导入 dibao.yaml：1处改动已发布" in await follow(admin_client, response)
    assert "身份证和户口本" in (await _bot_reply(settings, QUESTION))[1]
    actions = [a.action for a in await _all(settings, select(AuditEntry))]
    assert "content_export" in actions and "faq_import" in actions


async def test_import_shows_problems_and_changes_nothing(admin_client: Any,
                                                         settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    revision = await _scalar(settings, _revision())
    bad = yaml.safe_dump([{"id": "dibao-new", "category": "低保", "question": "低保是啥",
                           "alternatives": ["x"], "keywords": ["低保"], "answer": "好",
                           "source": "本局", "reviewed": "2026-11-28"}], allow_unicode=True)
    form = aiohttp.FormData()
    form.add_field("csrf", token)
    form.add_field("file", bad.encode(), filename="dibao_extra.yaml")
    response = await admin_client.post("/admin/import", data=form)
    html = await response.text()
    assert response.status == 400
    assert "不能导入" in html and "其他问法至少要8种" in html
    assert "问法“低保是啥”已经用在条目 dibao-what 里了" in html
    assert "确认并发布" not in html
    dictionary = aiohttp.FormData()
    dictionary.add_field("csrf", token)
    dictionary.add_field("file", "replacements:\n  俺: 俺\n".encode(), filename="dictionary.yaml")
    html = await (await admin_client.post("/admin/import", data=dictionary)).text()
    assert "替换后的词不能和原来的词一样" in html
    assert await _scalar(settings, _revision()) == revision


async def test_uploads_larger_than_the_bot_allows_still_reach_the_admin(
        aiohttp_client: Any, settings: Settings) -> None:
    from aiohttp import web

    from huimin.wiring.apps import create_admin_app

    root = web.Application(client_max_size=settings.max_body_bytes)  # as the bot's app
    root.add_subapp("/admin", create_admin_app(settings))
    client = await aiohttp_client(root)
    token = await signed_in(client, settings, "editor")
    big = ("# " + "说明" * 40000 + "\n").encode() + b"- not a mapping\n"
    assert len(big) > settings.max_body_bytes
    form = aiohttp.FormData()
    form.add_field("csrf", token)
    form.add_field("file", big, filename="dibao.yaml")
    response = await client.post("/admin/import", data=form)
    assert response.status == 400  # read and checked, not refused as too large
    html = await response.text()
    assert "不能导入" in html and "每个条目都要写成“栏目: 内容”的样子" in html


def test_every_content_problem_is_worded_from_its_code_not_its_english_text() -> None:
    assert set(WORDING) == set(MESSAGES)
    few = problem("content/faq/x.yaml", "x-one", "too_few_alternatives", "alternatives",
                  least=8, has=1)
    reworded = dataclasses.replace(few, message="(the English wording may change)")
    assert explain(reworded) == FieldError("alternatives", "其他问法至少要8种，现在只有1种",
                                           "x-one")
    long = problem("content/faq/x.yaml", "x-one", "too_long", "details", length=700,
                   limit=600)
    assert explain(long) == FieldError("details", "详细说明显示出来有700个字，最多600个字",
                                       "x-one")
