"""Weak passwords are refused everywhere a password is set, and a password someone else
chose (a new account, an administrator's reset) must be replaced before anything else."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from sqlalchemy import select

from admin.accounts import AccountError, create_user, password_problem
from admin.cli import DEMO_USERS, ensure_demo_users, reset_password_command
from admin.models import AdminUser
from content.models import DictionaryRow
from huimin.db import Database
from huimin.settings import Settings
from tests.admin.conftest import PASSWORD, csrf, follow, login, post, rows_of, signed_in

WEAK = ["1234567890", "password12", " " * 10, "qwertyuiop", "aaaaaaaaaaaa", "abc123abc123",
        "Password123", "1qaz2wsx3edc", "zhangsan2026", "19620817zs"]
STRONG = "qingshui-hetang-27-lu"


async def _user(settings: Settings, username: str) -> AdminUser | None:
    found = await rows_of(settings, select(AdminUser).where(AdminUser.username == username))
    return found[0] if found else None


@pytest.mark.parametrize("weak", WEAK)
async def test_an_administrator_cannot_give_a_weak_password(admin_client: Any,
                                                            settings: Settings,
                                                            weak: str) -> None:
    token = await signed_in(admin_client, settings, "admin", "boss")
    response = await post(admin_client, "/admin/users", token, username="zhangsan",
                          role="editor", password=weak, display_name="张三")
    assert response.status == 400
    html = await response.text()
    assert "太容易被猜到" in html or "不能全是空格" in html or "用户名" in html
    assert await _user(settings, "zhangsan") is None


def test_what_the_check_says() -> None:
    assert password_problem("short") == "密码至少要10个字符"
    assert password_problem(" " * 10) == "密码不能全是空格"
    assert password_problem("wang-shui-he-27", "wang") == "密码里不能有用户名或姓名"
    common = password_problem("password12") or ""
    assert "太容易被猜到" in common and "常见密码或常用词" in common
    assert "按顺序" in (password_problem("3456789012") or "")
    assert "键盘上挨着的键" in (password_problem("zxcvbnmasd") or "")
    assert "重复" in (password_problem("aaaaaaaaaaaa") or "")
    for fine in (STRONG, PASSWORD, "Hetang Lu 27 hao Qingshui", "x" * 3 + "-7Kp!q9Vz-mT"):
        assert password_problem(fine, "zhangsan", "张三") is None, fine
    assert password_problem("x" * 257) == "密码最多256个字符"


async def test_weak_passwords_are_refused_at_reset_and_own_change(
        admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "admin", "boss")
    await post(admin_client, "/admin/users", token, username="zhao", role="editor",
               password=STRONG)
    zhao = await _user(settings, "zhao")
    assert zhao is not None
    response = await post(admin_client, f"/admin/users/{zhao.id}/password", token,
                          password="password12")
    assert "太容易被猜到" in await follow(admin_client, response)
    own = await post(admin_client, "/admin/account/password", token, current=PASSWORD,
                     password="1234567890", repeat="1234567890")
    assert own.status == 400 and "太容易被猜到" in await own.text()


async def test_the_command_line_refuses_weak_passwords(settings: Settings) -> None:
    db = Database(settings.database_url)
    try:
        with pytest.raises(AccountError, match="太容易被猜到"):
            await create_user(db, "zhao", "password12", "editor")
        await create_user(db, "zhao", STRONG, "editor")
    finally:
        await db.dispose()
    weak = await asyncio.to_thread(reset_password_command, settings, "zhao",
                                   password_from="stdin", stdin=io.StringIO("1234567890\n"))
    assert weak == 1


async def test_a_new_account_must_choose_its_own_password_first(
        aiohttp_client: Any, admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "admin", "boss")
    await post(admin_client, "/admin/users", token, username="zhao", role="editor",
               password=STRONG, display_name="赵六")
    zhao = await aiohttp_client(admin_client.server.app)
    first = await login(zhao, "zhao", STRONG, next_path="/admin/faq")
    assert first.status == 303 and first.headers["Location"] == "/admin/account"
    page = await (await zhao.get("/admin/account")).text()
    assert "请先改成只有您自己知道的密码" in page
    for path in ("/admin/", "/admin/faq", "/admin/dictionary"):
        response = await zhao.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/admin/account"
    own_token = await csrf(zhao)
    blocked = await post(zhao, "/admin/dictionary/add", own_token, kind="filler", term="嗯哼")
    assert blocked.status == 303 and blocked.headers["Location"] == "/admin/account"
    assert not await rows_of(settings, select(DictionaryRow).where(
        DictionaryRow.term == "嗯哼"))
    same = await post(zhao, "/admin/account/password", own_token, current=STRONG,
                      password=STRONG, repeat=STRONG)
    assert same.status == 400 and "不能和现在的密码一样" in await same.text()
    changed = await post(zhao, "/admin/account/password", own_token, current=STRONG,
                         password="lanhua-zhen-88-hao", repeat="lanhua-zhen-88-hao")
    assert changed.status == 303 and "m=changed" in changed.headers["Location"]
    again = await login(zhao, "zhao", "lanhua-zhen-88-hao", next_path="/admin/faq")
    assert again.headers["Location"] == "/admin/faq"
    assert (await zhao.get("/admin/faq")).status == 200
    assert not (await _user(settings, "zhao")).must_change_password  # type: ignore[union-attr]


async def test_after_an_administrators_reset_the_owner_must_change_it(
        aiohttp_client: Any, admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "admin", "boss")
    wang = await aiohttp_client(admin_client.server.app)
    await signed_in(wang, settings, "editor", "wang")
    assert (await wang.get("/admin/faq")).status == 200
    wang_id = (await _user(settings, "wang")).id  # type: ignore[union-attr]
    await post(admin_client, f"/admin/users/{wang_id}/password", token, password=STRONG)
    users = await (await admin_client.get("/admin/users")).text()
    assert "等本人改密码" in users
    response = await login(wang, "wang", STRONG)
    assert response.headers["Location"] == "/admin/account"
    assert (await wang.get("/admin/faq", allow_redirects=False)).status == 303
    # the command line's reset too
    assert await asyncio.to_thread(reset_password_command, settings, "boss",
                                   password_from="stdin", stdin=io.StringIO(STRONG + "\n")) == 0
    assert (await _user(settings, "boss")).must_change_password  # type: ignore[union-attr]


async def test_the_demo_accounts_sign_in_as_printed(admin_client: Any,
                                                    settings: Settings) -> None:
    made = await ensure_demo_users(settings)
    assert [m[0] for m in made] == [u[0] for u in DEMO_USERS]
    for username, _name, _role, password in DEMO_USERS:
        assert password_problem(password, username) is None
        admin_client.session.cookie_jar.clear()
        response = await login(admin_client, username, password)
        assert response.status == 303 and response.headers["Location"] == "/admin/"
        assert (await admin_client.get("/admin/", allow_redirects=False)).status == 200
