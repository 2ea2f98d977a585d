"""``huimin doctor`` against the local fake WeChat server, through the real command."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from huimin.migrate import alembic_config
from tests.conftest import SECRET_KEY
from tests.fakes.wechat_server import APPID, SECRET, FakeWeChat
from tests.wechat import TOKEN

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("verification_code", "payout", "recheck_due", "recheck_overdue", "status_change",
         "case_reply")


def _environment(database_url: str, api_base: str, **changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUIMIN_")}
    env.update({
        "HUIMIN_DATABASE_URL": database_url,
        "HUIMIN_WECHAT_TOKEN": TOKEN, "HUIMIN_WECHAT_APPID": APPID,
        "HUIMIN_WECHAT_SECRET": SECRET, "HUIMIN_WECHAT_API_BASE": api_base,
        "HUIMIN_SECRET_KEY": SECRET_KEY, "HUIMIN_SMS_PROVIDER": "tencent",
        "HUIMIN_SMS_TENCENT_SECRET_ID": "AKIDtest", "HUIMIN_SMS_TENCENT_SECRET_KEY": "key",
        "HUIMIN_SMS_TENCENT_APP_ID": "1400000000",
        "HUIMIN_SMS_TENCENT_TEMPLATES": ",".join(f"{k}={100 + i}"
                                                 for i, k in enumerate(KINDS)),
    })
    if os.environ.get("HUIMIN_TEST_REDIS_URL"):
        env["HUIMIN_REDIS_URL"] = os.environ["HUIMIN_TEST_REDIS_URL"]
    env.update(changes)
    return env


async def _doctor(env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "huimin.cli", "doctor", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode()


@pytest.fixture
async def fake_wechat(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeWeChat()
    await fake.start(aiohttp_server)
    yield fake
    assert fake.problems == []


async def test_doctor_passes_a_complete_configuration(database_url, fake_wechat):
    code, out = await _doctor(_environment(database_url, fake_wechat.base_url))
    assert code == 0, out
    assert "✗" not in out
    for check in ("数据库结构", "Redis", "微信接口", "短信模板（tencent）", "本机时钟"):
        assert f"✓ {check}" in out, out
    assert fake_wechat.token_calls == 1
    assert fake_wechat.force_refresh_calls == 0  # never invalidates the token in use


async def test_doctor_names_a_wrong_appsecret_with_the_fix(database_url, fake_wechat):
    code, out = await _doctor(_environment(database_url, fake_wechat.base_url,
                                           HUIMIN_WECHAT_SECRET="f" * 32))
    assert code == 1
    assert "✗ 微信接口" in out and "40125" in out
    assert "怎么改：AppSecret 不对" in out and "HUIMIN_WECHAT_SECRET" in out
    assert "f" * 32 not in out  # the secret itself is never printed
    assert "✓ 数据库结构" in out


async def test_doctor_finds_an_old_schema_and_says_run_init(tmp_path, fake_wechat):
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    revisions = list(ScriptDirectory.from_config(config).walk_revisions())
    await asyncio.to_thread(command.upgrade, config, revisions[-1].revision)  # the first
    code, out = await _doctor(_environment(url, fake_wechat.base_url))
    assert code == 1
    assert f"✗ 数据库结构：版本 {revisions[-1].revision}" in out
    assert "怎么改：先备份（pg_dump），再运行 huimin init 升级" in out


async def test_doctor_reports_missing_templates_and_bad_settings(database_url, fake_wechat):
    env = _environment(database_url, fake_wechat.base_url,
                       HUIMIN_SMS_TENCENT_TEMPLATES="payout=1")
    code, out = await _doctor(env)
    assert code == 1
    assert "✗ 短信模板（tencent）：缺少 verification_code, recheck_due" in out
    assert "huimin notify preview" in out
    code, out = await _doctor({**env, "HUIMIN_QUIET_HOURS": "late"})
    assert code == 1
    assert "✗ 设置：HUIMIN_QUIET_HOURS must look like 21:00-08:00" in out


async def test_doctor_creates_no_database_file(tmp_path, fake_wechat):
    missing = tmp_path / "nowhere.db"
    code, out = await _doctor(_environment(f"sqlite+aiosqlite:///{missing}",
                                           fake_wechat.base_url))
    assert code == 1
    assert f"✗ 数据库结构：没有数据库文件 {missing}" in out and "运行 huimin init" in out
    assert not missing.exists()
