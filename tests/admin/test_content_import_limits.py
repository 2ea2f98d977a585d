"""Importing a content file (导入): alias bombs, anchors, oversized files, values YAML
cannot build and files with very many problems get a clear 400, quickly."""

from __future__ import annotations

import html as html_lib
import time
from typing import Any

import aiohttp
import yaml
from sqlalchemy import func, select

from admin.transfer import MAX_ENTRIES, MAX_ERRORS_SHOWN
from content.load import MAX_FILE_BYTES
from content.models import ContentRevision
from huimin.db import Database
from huimin.settings import Settings
from tests.admin.conftest import post, signed_in
from tests.content.test_yaml_limits import big_alias_bomb


async def _import(client: Any, token: str, data: bytes, name: str = "dibao.yaml") -> Any:
    form = aiohttp.FormData()
    form.add_field("csrf", token)
    form.add_field("file", data, filename=name, content_type="application/x-yaml")
    return await client.post("/admin/import", data=form)


async def _revision(settings: Settings) -> int:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return await session.scalar(select(func.max(ContentRevision.id))) or 0
    finally:
        await db.dispose()


def _entry(number: int, **changes: Any) -> dict[str, Any]:
    entry = {"id": f"bulk-{number}", "category": "低保", "question": f"批量问题{number}",
             "alternatives": [f"批量问题{number}的问法{i}" for i in range(8)],
             "keywords": ["批量"], "answer": "好", "source": "本局", "reviewed": "2026-11-28"}
    entry.update(changes)
    return entry


async def test_an_alias_bomb_is_refused_quickly(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    revision = await _revision(settings)
    bomb = big_alias_bomb().encode()
    started = time.perf_counter()
    response = await _import(admin_client, token, bomb)
    page = await response.text()
    assert time.perf_counter() - started < 3
    assert response.status == 400
    assert "第1行附近用了 YAML 的“锚点/别名”" in page
    assert len(page) < len(bomb) + 50_000  # the page holds no expansion
    # sent straight to the publish step, it is refused the same way
    response = await post(admin_client, "/admin/import/publish", token,
                          file_name="dibao.yaml", text=big_alias_bomb())
    assert response.status == 400
    assert "锚点/别名" in await response.text()
    assert await _revision(settings) == revision


async def test_a_plain_anchor_and_alias_are_refused_with_the_line(admin_client: Any,
                                                                 settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    text = yaml.safe_dump([_entry(1)], allow_unicode=True, sort_keys=False)
    text = text.replace("answer: 好", "answer: &same 好") + "  details: *same\n"
    response = await _import(admin_client, token, text.encode())
    page = await response.text()
    assert response.status == 400
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "&same" in row)
    assert f"第{line}行附近用了 YAML 的“锚点/别名”" in page and "确认并发布" not in page


async def test_an_oversized_file_is_refused(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    response = await _import(admin_client, token, b"- " + b"x" * MAX_FILE_BYTES)
    assert response.status == 400
    assert "文件太大了（最大1MB）" in await response.text()
    # the publish step checks the size of the text too
    response = await post(admin_client, "/admin/import/publish", token,
                          file_name="dibao.yaml", text="# " + "x" * MAX_FILE_BYTES)
    assert response.status == 400
    assert "文件太大了（最大1MB）" in await response.text()


async def test_values_yaml_cannot_build_are_a_400_not_a_500(admin_client: Any,
                                                           settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    for text, message in (
            ("- id: a\n  reviewed: 2026-13-45\n", "第2行附近有一个值读不出来"),
            ("- id: a\n  answer: " + "9" * 5000 + "\n", "第2行附近有一个值读不出来"),
            ("[" * 30 + "]" * 30, "第1行附近括号或缩进套得太深了"),
            ("[" * 5000, "文件格式（YAML）有错第1行附近"),
            ("- !!python/object/apply:os.system ['id']\n", "文件格式（YAML）有错第1行附近")):
        response = await _import(admin_client, token, text.encode())
        assert response.status == 400, text[:40]
        assert message in await response.text(), text[:40]


async def test_many_problems_are_shown_fifty_at_a_time(admin_client: Any,
                                                       settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    entries = [_entry(i, alternatives=["只有一种"], reviewed="去年") for i in range(120)]
    response = await _import(admin_client, token,
                             yaml.safe_dump(entries, allow_unicode=True).encode())
    page = html_lib.unescape(await response.text())
    assert response.status == 400
    errors = page.split("有问题，不能导入")[1].split("</ul>")[0]
    assert errors.count("<li>") == MAX_ERRORS_SHOWN + 1
    assert f"还有 {120 - MAX_ERRORS_SHOWN} 处错误没有列出来" in errors


async def test_too_many_entries_in_one_file_are_refused(admin_client: Any,
                                                        settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "editor")
    entries = [_entry(i) for i in range(MAX_ENTRIES + 1)]
    response = await _import(admin_client, token,
                             yaml.safe_dump(entries, allow_unicode=True).encode())
    assert response.status == 400
    assert f"一个文件最多{MAX_ENTRIES}个" in await response.text()
