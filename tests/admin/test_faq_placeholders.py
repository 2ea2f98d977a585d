"""Template injection through FAQ answers: an editor's answer is data. Anything but the
county placeholders is refused when saved, published, created, imported or reverted to,
and, if it is in the database anyway, shown as written by the bot, the preview and
试一试 — never evaluated."""

from __future__ import annotations

import html as html_lib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from sqlalchemy import func, select

from admin.models import FaqDraft, FaqVersion
from bot.app import BOT
from content.models import ContentRevision, FaqEntryRow
from huimin.clock import utcnow
from huimin.db import Database
from huimin.settings import Settings
from huimin.wiring.apps import create_app
from tests.admin.conftest import follow, mounted, post, signed_in
from tests.admin.test_faq import ENTRY, QUESTION, _bot_reply, _form
from tests.conftest import SECRET_KEY
from tests.content.test_placeholders import attacks

ENV_SECRET = "env-secret-that-must-never-show"
SECRET_ATTACK = "{{ cycler.__init__.__globals__.os.environ['HUIMIN_SECRET_KEY'] }}"


@pytest.fixture(autouse=True)
def _secret_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the attack reads: the secret key in the process environment."""
    monkeypatch.setenv("HUIMIN_SECRET_KEY", ENV_SECRET)


def _no_leak(text: str) -> None:
    text = html_lib.unescape(text)
    assert ENV_SECRET not in text and SECRET_KEY not in text
    assert "<class" not in text and "uid=" not in text


async def _count(settings: Settings, query: Any) -> Any:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return await session.scalar(query)
    finally:
        await db.dispose()


async def _store(settings: Settings, answer: str, details: str | None = None) -> None:
    """Put an answer into the database as if it had got there some other way."""
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            row = await session.get(FaqEntryRow, ENTRY)
            row.answer = answer
            row.details = details
            session.add(ContentRevision(note="test: stored directly"))
            data = {"id": ENTRY, "file": row.file, "category": row.category,
                    "question": row.question, "alternatives": list(row.alternatives),
                    "keywords": list(row.keywords), "answer": answer, "details": details,
                    "source": row.source, "reviewed": row.reviewed.isoformat()}
            session.add(FaqDraft(entry_id=ENTRY, is_new=False, data=data, base_version=0,
                                 inbox_ids=[], updated_by="x", updated_at=utcnow()))
    finally:
        await db.dispose()


# ----- refused when saved and published ---------------------------------------------------
async def test_every_attack_is_refused_when_saved_or_published(
        admin_client: Any, settings: Settings, tmp_path: Path) -> None:
    token = await signed_in(admin_client, settings, "editor")
    form = await _form(admin_client, ENTRY)
    revision = await _count(settings, select(func.max(ContentRevision.id)))
    tried = [(attack, "save", "answer") for attack in attacks(tmp_path)]
    tried += [(attack, action, field) for attack in attacks(tmp_path)[:3]
              for action in ("save", "publish") for field in ("answer", "details")]
    for attack, action, field in tried:
        response = await post(admin_client, f"/admin/faq/{ENTRY}", token,
                              **{**form, field: attack, "action": action})
        page = await response.text()
        assert response.status == 400, (attack, action, field)
        _no_leak(page)
        beside = page.split(f'id="f-{field}"')[1].split('class="hint"')[0]
        assert "不能用" in beside and "{{ county.hotline }}（咨询电话）" in beside
        assert "这次什么也没有保存" in page
        # what was typed is still in the form
        typed = page.split(f'id="f-{field}"')[1].split("</textarea>")[0]
        assert attack in html_lib.unescape(typed)
    assert await _count(settings, select(func.count()).select_from(FaqDraft)) == 0
    assert await _count(settings, select(func.max(ContentRevision.id))) == revision
    assert not (tmp_path / "ran").exists()
    _, reply = await _bot_reply(settings, QUESTION)
    _no_leak(reply)


async def test_the_message_names_the_bad_placeholder(admin_client: Any,
                                                     settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    form = await _form(admin_client, ENTRY)
    response = await post(admin_client, f"/admin/faq/{ENTRY}", token, **{
        **form, "answer": "请打{{ county.hotline }}，{{ county.phone }}", "action": "save"})
    page = html_lib.unescape(await response.text())
    assert response.status == 400
    assert ("答案里的“{{ county.phone }}”不能用。答案和详细说明里只能用这几个占位符（照原样写，"
            "会换成县里的信息）：{{ county.hotline }}（咨询电话）、"
            "{{ county.bureau_name }}（单位名称）") in page
    # the allowed one alone is fine
    response = await post(admin_client, f"/admin/faq/{ENTRY}", token, **{
        **form, "answer": "请打{{county.hotline}}咨询。", "action": "publish"})
    await follow(admin_client, response)
    _, reply = await _bot_reply(settings, QUESTION)
    assert reply == "请打0000-1234567咨询。"


async def test_a_new_entry_with_an_attack_is_not_saved(admin_client: Any,
                                                       settings: Settings) -> None:
    from tests.admin.test_faq import NEW_ENTRY

    token = await signed_in(admin_client, settings, "editor")
    for action in ("save", "publish"):
        response = await post(admin_client, "/admin/faq/new", token,
                              **{**NEW_ENTRY, "answer": SECRET_ATTACK, "action": action})
        page = await response.text()
        assert response.status == 400
        _no_leak(page)
        assert "不能用" in page.split('id="f-answer"')[1].split('class="hint"')[0]
    assert await _count(settings, select(func.count()).select_from(FaqDraft)) == 0
    assert await _count(settings, select(FaqEntryRow).where(
        FaqEntryRow.id == NEW_ENTRY["id"])) is None


async def test_an_imported_file_with_an_attack_is_refused(admin_client: Any,
                                                          settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            row = await session.get(FaqEntryRow, ENTRY)
            entry = {"id": ENTRY, "category": row.category, "question": row.question,
                     "alternatives": list(row.alternatives), "keywords": list(row.keywords),
                     "answer": row.answer, "details": SECRET_ATTACK, "source": row.source,
                     "reviewed": row.reviewed.isoformat()}
    finally:
        await db.dispose()
    form = aiohttp.FormData()
    form.add_field("csrf", token)
    form.add_field("file", yaml.safe_dump([entry], allow_unicode=True).encode(),
                   filename="dibao.yaml")
    response = await admin_client.post("/admin/import", data=form)
    page = await response.text()
    assert response.status == 400
    _no_leak(page)
    assert f"详细说明里的“{SECRET_ATTACK}”不能用" in html_lib.unescape(page)
    assert "确认并发布" not in page


async def test_reverting_to_a_version_with_an_attack_is_refused(admin_client: Any,
                                                                settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    form = await _form(admin_client, ENTRY)
    await follow(admin_client, await post(admin_client, f"/admin/faq/{ENTRY}", token,
                                          **{**form, "action": "publish"}))
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            version = await session.scalar(select(FaqVersion).where(
                FaqVersion.entry_id == ENTRY, FaqVersion.version == 1))
            session.add(FaqVersion(entry_id=ENTRY, version=3,
                                   data={**version.data, "answer": SECRET_ATTACK},
                                   note="", published_by="x", published_at=utcnow()))
    finally:
        await db.dispose()
    response = await post(admin_client, f"/admin/faq/{ENTRY}/revert", token, version="3")
    page = await follow(admin_client, response)
    assert "不能恢复第3版" in page and "不能用" in page
    _no_leak(page)
    row = await _count(settings, select(FaqEntryRow).where(FaqEntryRow.id == ENTRY))
    assert row.answer != SECRET_ATTACK


# ----- in the database anyway: shown as written, never evaluated ---------------------------
async def test_a_stored_attack_is_shown_as_written_everywhere(
        aiohttp_client: Any, settings: Settings, tmp_path: Path) -> None:
    popen = f"{{{{ cycler.__init__.__globals__.os.popen('touch {tmp_path / 'ran'}').read() }}}}"
    await _store(settings, SECRET_ATTACK + "{{ lipsum }}{{ config }}", details=popen)

    # a bot process: its snapshot builds, and the answer and details are the text as stored
    bot_app = create_app(settings)
    client = await aiohttp_client(bot_app)
    bot = bot_app[BOT]
    assert bot.snapshot.answers[ENTRY] == SECRET_ATTACK + "{{ lipsum }}{{ config }}"
    assert bot.snapshot.details[ENTRY] == popen
    faq_id, reply = await _bot_reply(settings, QUESTION)
    assert faq_id == ENTRY and reply == SECRET_ATTACK + "{{ lipsum }}{{ config }}"
    assert (await client.get("/healthz")).status == 200

    # the admin: preview of the draft, 试一试 on the draft and on the published content
    admin = await aiohttp_client(mounted(settings))
    await signed_in(admin, settings, "editor")
    for path, params in ((f"/admin/faq/{ENTRY}", {}), (f"/admin/faq/{ENTRY}", {"q": QUESTION}),
                         ("/admin/try", {"q": QUESTION})):
        response = await admin.get(path, params=params)
        page = await response.text()
        assert response.status == 200
        _no_leak(page)
        assert SECRET_ATTACK in html_lib.unescape(page)
    assert not (tmp_path / "ran").exists()
