"""Behind our own proxies the client's address comes from X-Forwarded-For: the entry the
outermost trusted proxy added, never one the client wrote itself."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from admin.models import AuditEntry
from huimin.settings import SettingsError, load_settings
from huimin.wiring.apps import create_admin_app
from tests.admin.clock import StepClock, behind_proxy, mounted_on
from tests.admin.conftest import PASSWORD, add_user, csrf_of, mounted, rows_of


async def _try(client: Any, forwarded: str | list[str] | None, password: str = "wrong-password"
               ) -> Any:
    page = await client.get("/admin/login")
    token = csrf_of(await page.text())
    headers: Any = {}
    if isinstance(forwarded, str):
        headers = {"X-Forwarded-For": forwarded}
    elif forwarded is not None:
        headers = [("X-Forwarded-For", value) for value in forwarded]
    return await client.post("/admin/login", allow_redirects=False, headers=headers,
                             data={"csrf": token, "username": "wang", "password": password})


async def _addresses(settings: Any) -> list[str | None]:
    entries = await rows_of(settings, select(AuditEntry).order_by(AuditEntry.id))
    return [e.ip for e in entries if e.action in ("login_failed", "login")]


async def test_the_proxy_added_entry_is_the_address(aiohttp_client: Any, settings: Any) -> None:
    client = await aiohttp_client(mounted_on(behind_proxy(settings), StepClock()))
    await add_user(settings, "wang", "editor")
    await _try(client, "203.0.113.9")
    await _try(client, "10.1.1.1, 198.51.100.7")  # the client wrote the first one
    await _try(client, ["6.6.6.6", "198.51.100.8"])  # two headers are one list
    await _try(client, "[2001:db8::1]:4431")
    await _try(client, "203.0.113.10:5123")
    assert await _addresses(settings) == ["203.0.113.9", "198.51.100.7", "198.51.100.8",
                                          "2001:db8::1", "203.0.113.10"]


async def test_a_client_writing_the_header_does_not_escape_the_limit(
        aiohttp_client: Any, settings: Any) -> None:
    client = await aiohttp_client(mounted_on(behind_proxy(settings), StepClock()))
    await add_user(settings, "wang", "editor")
    for n in range(5):  # a new made-up address each time, all through the same proxy hop
        await _try(client, f"192.0.2.{n}, 203.0.113.9")
    response = await _try(client, "192.0.2.99, 203.0.113.9", PASSWORD)
    assert response.status == 429
    assert set(await _addresses(settings)) == {"203.0.113.9"}


async def test_more_hops(aiohttp_client: Any, settings: Any) -> None:
    client = await aiohttp_client(mounted_on(behind_proxy(settings, hops=2), StepClock()))
    await add_user(settings, "wang", "editor")
    await _try(client, "1.2.3.4, 203.0.113.9, 10.0.0.2")  # a CDN, then our own nginx
    await _try(client, "10.0.0.2")  # did not come through both: the peer
    assert await _addresses(settings) == ["203.0.113.9", "127.0.0.1"]


@pytest.mark.parametrize("header", [
    "", " ", ",", "203.0.113.9,", "unknown", "203.0.113.9, not-an-address", "999.1.1.1",
    "[2001:db8::1", "::1]:80", "1.2.3.4:port", "1" * 5000, "203.0.113.9, " * 300,
    "２０３.０.１１３.９", "1.2.3.4\t, \t"])
async def test_a_malformed_header_falls_back_to_the_peer(aiohttp_client: Any, settings: Any,
                                                         header: str) -> None:
    client = await aiohttp_client(mounted_on(behind_proxy(settings), StepClock()))
    await add_user(settings, "wang", "editor")
    response = await _try(client, header)
    assert response.status == 401
    (address,) = await _addresses(settings)
    assert address == "127.0.0.1"


async def test_the_header_is_ignored_unless_trusted(admin_client: Any, settings: Any) -> None:
    await add_user(settings, "wang", "editor")
    await _try(admin_client, "203.0.113.9")
    assert await _addresses(settings) == ["127.0.0.1"]


@pytest.mark.parametrize("hops", ["0", "-1", "two", "6", "1.5", "²"])
def test_trusted_hops_are_checked_at_start(settings: Any, hops: str) -> None:
    environ = {"HUIMIN_ADMIN_TRUST_FORWARDED": "1", "HUIMIN_ADMIN_TRUSTED_HOPS": hops}
    with pytest.raises(SettingsError, match="HUIMIN_ADMIN_TRUSTED_HOPS"):
        load_settings(environ)
    with pytest.raises(SettingsError, match="HUIMIN_ADMIN_TRUSTED_HOPS"):
        create_admin_app(settings.with_overrides(admin_trust_forwarded="1",
                                                 admin_trusted_hops=hops))


def test_trust_forwarded_must_be_yes_or_no() -> None:
    with pytest.raises(SettingsError, match="HUIMIN_ADMIN_TRUST_FORWARDED"):
        load_settings({"HUIMIN_ADMIN_TRUST_FORWARDED": "sometimes"})
    settings = load_settings({"HUIMIN_ADMIN_TRUST_FORWARDED": "yes",
                              "HUIMIN_ADMIN_TRUSTED_HOPS": "2"})
    assert mounted(settings) is not None
