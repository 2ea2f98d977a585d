"""Fixtures for the admin UI: the admin app mounted at /admin, accounts, signing in."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient
from sqlalchemy import select, text

from admin.accounts import _hasher
from admin.models import TABLES, AdminUser
from huimin.clock import utcnow
from huimin.db import Database
from huimin.personal import Vault
from huimin.registry.importer import import_applications
from huimin.registry.models import Application
from huimin.settings import Settings
from huimin.wiring.apps import create_admin_app
from notify.payouts import import_payouts

TEST_DATABASE_URL = os.environ.get("HUIMIN_TEST_DATABASE_URL")
PASSWORD = "correct-horse-battery"
PASSWORD_HASH = _hasher.hash(PASSWORD)  # once, so tests need not hash again
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def _empty_admin_tables(url: str) -> None:
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
    await db.dispose()


@pytest.fixture(autouse=True)
def _fresh_admin_tables(database_url: str) -> None:
    """tests/conftest.py empties its own list of tables between PostgreSQL tests; the
    admin tables are emptied here (harmless once they are on that list too)."""
    if TEST_DATABASE_URL:
        asyncio.run(_empty_admin_tables(database_url))


@pytest.fixture(autouse=True)
def _own_upload_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Uploaded lists wait under the temporary directory: this test's own."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


async def add_user(settings: Settings, username: str, role: str,
                   disabled: bool = False) -> int:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            user = AdminUser(username=username, display_name=f"{username}本人",
                             password_hash=PASSWORD_HASH, role=role, disabled=disabled,
                             created_at=utcnow())
            session.add(user)
            await session.flush()
            return user.id
    finally:
        await db.dispose()


def mounted(settings: Settings) -> web.Application:
    root = web.Application()
    root.add_subapp("/admin", create_admin_app(settings))
    return root


@pytest.fixture
async def admin_client(aiohttp_client: Any, settings: Settings) -> TestClient:
    return await aiohttp_client(mounted(settings))


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no csrf field on the page"
    return found.group(1)


async def login(client: TestClient, username: str, password: str = PASSWORD,
                next_path: str = "") -> Any:
    page = await client.get("/admin/login")
    token = csrf_of(await page.text())
    return await client.post("/admin/login", allow_redirects=False, data={
        "csrf": token, "username": username, "password": password, "next": next_path})


async def signed_in(client: TestClient, settings: Settings, role: str,
                    username: str | None = None) -> str:
    """Create an account with ``role``, sign in; returns the session's CSRF token."""
    name = username or role
    await add_user(settings, name, role)
    response = await login(client, name)
    assert response.status == 303, await response.text()
    return await csrf(client)


async def csrf(client: TestClient) -> str:
    page = await client.get("/admin/account")
    assert page.status == 200
    return csrf_of(await page.text())


async def post(client: TestClient, path: str, token: str, **data: Any) -> Any:
    return await client.post(path, data={"csrf": token, **data}, allow_redirects=False)


async def follow(client: TestClient, response: Any) -> str:
    """The page a 303 leads to (where the one-time message is shown)."""
    assert response.status == 303, f"{response.status}: {await response.text()}"
    page = await client.get(response.headers["Location"])
    return await page.text()


# ----- the registry (救助对象, 发放, 提醒) ------------------------------------------------
DEMO = Path(__file__).resolve().parents[2] / "content" / "demo"
DEMO_ID = "34132319620817004X"  # 张桂兰 in content/demo/applications.csv
DEMO_PHONE = "13800138000"


async def load_demo(settings: Settings, payouts: bool = False) -> dict[str, int]:
    """Import the demo application list (and payout list); application number -> id."""
    db = Database(settings.database_url)
    vault = Vault(settings.secret_key or "")
    try:
        report = await import_applications(db, vault, DEMO / "applications.csv")
        assert not report.errors, report.error_lines()
        if payouts:
            paid = await import_payouts(db, vault, DEMO / "payouts.csv")
            assert not paid.errors, paid.error_lines()
        async with db.session() as session:
            rows = (await session.execute(select(Application.number, Application.id))).all()
        return {number: app_id for number, app_id in rows}
    finally:
        await db.dispose()


async def upload(client: TestClient, path: str, token: str, filename: str,
                 data: bytes) -> Any:
    form = FormData()
    form.add_field("csrf", token)
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return await client.post(path, data=form, allow_redirects=False)


async def job_result(client: TestClient, response: Any, timeout: float = 60) -> str:
    """Follow a 确认导入's redirect to the import job's page and reload it, as the page
    does by itself, until the job has ended; the page's HTML then."""
    assert response.status == 303, f"{response.status}: {await response.text()}"
    location = response.headers["Location"]
    assert "/admin/imports/" in location, location
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        page = await client.get(location)
        assert page.status == 200
        if "Refresh" not in page.headers:  # a running job's page reloads itself
            return await page.text()
        assert loop.time() < deadline, "the import job did not end"
        await asyncio.sleep(0.05)


def upload_token(html: str) -> str:
    found = re.search(r'name="upload" value="([^"]+)"', html)
    assert found, "no upload token on the page"
    return found.group(1)


async def rows_of(settings: Settings, statement: Any) -> list[Any]:
    """Run one SELECT on the test database (scalars when it selects one entity)."""
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            result = await session.execute(statement)
            if len(result.keys()) == 1:
                return list(result.scalars().all())
            return list(result.all())
    finally:
        await db.dispose()


def assert_no_clear_numbers(html: str) -> None:
    """No demo ID or phone number in clear (in any case of the X)."""
    for secret in (DEMO_ID, DEMO_ID.lower(), DEMO_PHONE, "341323195503120032",
                   "13800131001"):
        assert secret not in html, f"{secret} shown in clear"
