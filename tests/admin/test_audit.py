"""The audit log records every change, and the audit page filters and pages it;
account management (管理员)."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from admin.audit import Actor, record
from admin.cli import create_user_command, reset_password_command
from admin.models import AdminUser, AuditEntry
from huimin.clock import CHINA, utcnow
from huimin.db import Database
from huimin.settings import Settings
from tests.admin.conftest import PASSWORD, follow, login, post, signed_in
from tests.admin.test_faq import ENTRY, NEW_ANSWER, _form


async def _entries(settings: Settings, action: str | None = None) -> list[AuditEntry]:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            query = select(AuditEntry).order_by(AuditEntry.id)
            if action:
                query = query.where(AuditEntry.action == action)
            return list((await session.scalars(query)).all())
    finally:
        await db.dispose()


async def _user(settings: Settings, username: str) -> AdminUser:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return (await session.scalars(select(AdminUser).where(
                AdminUser.username == username))).one()
    finally:
        await db.dispose()


async def test_changes_are_recorded_with_before_and_after(admin_client: Any,
                                                          settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    form = await _form(admin_client, ENTRY)
    await post(admin_client, f"/admin/faq/{ENTRY}", token,
               **{**form, "answer": NEW_ANSWER, "action": "save"})
    await post(admin_client, f"/admin/faq/{ENTRY}", token,
               **{**form, "answer": NEW_ANSWER, "action": "publish"})
    (draft, second_draft) = await _entries(settings, "faq_draft")
    assert draft.before is None and draft.after["answer"] == NEW_ANSWER
    assert second_draft.before["answer"] == NEW_ANSWER
    (published,) = await _entries(settings, "faq_publish")
    assert published.username == "editor" and published.ip == "127.0.0.1"
    assert published.target_type == "faq" and published.target_id == ENTRY
    assert published.before["answer"] != NEW_ANSWER
    assert published.after["answer"] == NEW_ANSWER and published.after["version"] == 2
    assert published.user_id is not None


async def test_audit_page_filters_and_pages(admin_client: Any, settings: Settings) -> None:
    await signed_in(admin_client, settings, "admin", "boss")
    db = Database(settings.database_url)
    async with db.session() as session:
        for i in range(60):
            record(session, Actor(None, "zhao", "10.0.0.1"), "dictionary_add", "dictionary",
                   f"replacement:词{i}", after={"term": f"词{i}"})
        record(session, Actor(None, "qian", "10.0.0.2"), "faq_publish", "faq", "cemetery")
    async with db.session() as session:  # one entry from last week
        await session.execute(update(AuditEntry).where(AuditEntry.target_id == "cemetery")
                              .values(at=utcnow() - timedelta(days=7)))
    await db.dispose()

    html = await (await admin_client.get("/admin/audit")).text()
    assert "共 62 条" in html and "第 1 / 2 页" in html  # 60 + 1 + the login
    second = await (await admin_client.get("/admin/audit", params={"page": "2"})).text()
    assert "第 2 / 2 页" in second
    only_qian = await (await admin_client.get("/admin/audit", params={"user": "qian"})).text()
    assert "共 1 条" in only_qian and "cemetery" in only_qian
    logins = await (await admin_client.get("/admin/audit", params={"action": "login"})).text()
    assert "共 1 条" in logins and "boss" in logins
    today = utcnow().astimezone(CHINA).date()
    recent = await (await admin_client.get("/admin/audit", params={
        "from": today.isoformat(), "to": today.isoformat()})).text()
    assert "共 61 条" in recent and "cemetery" not in recent
    old = await (await admin_client.get("/admin/audit", params={
        "to": (today - timedelta(days=1)).isoformat()})).text()
    assert "共 1 条" in old and "cemetery" in old
    assert "词0" in html or "词59" in html  # before/after shown


async def test_users_page_manages_accounts(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "admin", "boss")
    short = await post(admin_client, "/admin/users", token, username="li", role="editor",
                       password="short", display_name="李四")
    assert short.status == 400 and "密码至少要10个字符" in await short.text()
    response = await post(admin_client, "/admin/users", token, username="li", role="editor",
                          password="li-password-2026", display_name="李四")
    assert "已新建账号 li（内容编辑）" in await follow(admin_client, response)
    li = await _user(settings, "li")
    assert li.display_name == "李四" and li.password_hash.startswith("$argon2id$")

    response = await post(admin_client, f"/admin/users/{li.id}/role", token, role="caseworker")
    assert "角色已改为经办人员" in await follow(admin_client, response)
    response = await post(admin_client, f"/admin/users/{li.id}/password", token,
                          password="new-password-2026")
    assert "已重设 li 的密码" in await follow(admin_client, response)
    response = await post(admin_client, f"/admin/users/{li.id}/status", token, disabled="1")
    assert "已停用 li" in await follow(admin_client, response)
    assert (await _user(settings, "li")).disabled

    boss = await _user(settings, "boss")
    response = await post(admin_client, f"/admin/users/{boss.id}/status", token, disabled="1")
    assert "不能停用自己的账号" in await follow(admin_client, response)
    response = await post(admin_client, f"/admin/users/{boss.id}/role", token, role="editor")
    assert "不能修改自己的角色" in await follow(admin_client, response)

    actions = [(a.action, a.target_id) for a in await _entries(settings)]
    for action in ("user_create", "user_role", "user_password", "user_disable"):
        assert (action, "li") in actions
    (role_change,) = await _entries(settings, "user_role")
    assert role_change.before["role"] == "editor" and role_change.after["role"] == "caseworker"
    assert all(PASSWORD not in str(a.after) for a in await _entries(settings))


async def test_an_admin_can_demote_another_admin(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "admin", "boss")
    await post(admin_client, "/admin/users", token, username="second", role="admin",
               password="liuhe-27-qiao-2026")
    second = await _user(settings, "second")
    response = await post(admin_client, f"/admin/users/{second.id}/role", token, role="editor")
    assert "角色已改为内容编辑" in await follow(admin_client, response)


async def test_own_password_change(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    wrong = await post(admin_client, "/admin/account/password", token, current="nope",
                       password="another-password-1", repeat="another-password-1")
    assert wrong.status == 400 and "现在的密码不对" in await wrong.text()
    response = await post(admin_client, "/admin/account/password", token, current=PASSWORD,
                          password="another-password-1", repeat="another-password-1")
    assert response.status == 303 and "/admin/login" in response.headers["Location"]
    assert (await login(admin_client, "editor")).status == 401
    assert (await login(admin_client, "editor", "another-password-1")).status == 303
    assert await _entries(settings, "own_password")


def test_cli_creates_and_resets_accounts(settings: Settings, capsys: Any) -> None:
    code = create_user_command(settings, "zhang", "内容编辑", password_from="stdin",
                               display_name="张三", stdin=io.StringIO("hetang-lu-27-hao\n"))
    assert code == 0 and "已新建账号 zhang（内容编辑）" in capsys.readouterr().out
    again = create_user_command(settings, "zhang", "editor", password_from="stdin",
                                stdin=io.StringIO("hetang-lu-27-hao\n"))
    assert again == 1 and "已经有人用了" in capsys.readouterr().err
    assert create_user_command(settings, "wu", "boss", password_from="stdin",
                               stdin=io.StringIO("x\n")) == 2
    assert create_user_command(settings, "wu", "editor", password_from="stdin",
                               stdin=io.StringIO("short\n")) == 1
    assert reset_password_command(settings, "zhang", password_from="stdin",
                                  stdin=io.StringIO("lanhua-zhen-88-qiao\n")) == 0
    assert reset_password_command(settings, "nobody", password_from="stdin",
                                  stdin=io.StringIO("lanhua-zhen-88-qiao\n")) == 1
