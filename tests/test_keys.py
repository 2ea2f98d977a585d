"""Changing HUIMIN_SECRET_KEY: `huimin keys rotate` (killed halfway and resumed, as a real
subprocess) and `huimin keys status`, with the bot answering status lookups throughout.

10,000 people on PostgreSQL (HUIMIN_TEST_DATABASE_URL), fewer on SQLite to keep CI short."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from huimin.clock import utcnow
from huimin.db import Database
from huimin.keys import counter_keys, key_status, rotate
from huimin.personal import Vault, id_check_digit, mask_id, mask_phone
from huimin.registry.models import (
    Application,
    Beneficiary,
    DelegateInvitation,
    GuessCounter,
    VerificationCode,
)
from huimin.registry.queries import ApplicationRecord, redeem_invitation, save_application
from huimin.settings import Settings, SettingsError, load_settings
from notify.models import OptOut, OutboxMessage
from tests.conftest import TEST_DATABASE_URL
from tests.wechat import reply_text, signed_query, text_xml

OLD = "old-secret-key-0123456789"
NEW = "new-secret-key-9876543210"
PEOPLE = 10_000 if TEST_DATABASE_URL else 1_500
BATCH = 250 if TEST_DATABASE_URL else 50
DIGITS = "零一二三四五六七八九"


def id_number(i: int) -> str:
    born = date(1950, 1, 1) + timedelta(days=i // 500)
    first17 = f"341323{born:%Y%m%d}{(i % 500) * 2:03d}"
    return first17 + id_check_digit(first17)


def phone(i: int) -> str:
    return f"139{i:08d}"


def name(i: int) -> str:
    return "王" + "".join(DIGITS[int(d)] for d in str(i))


def opted_out(i: int) -> bool:
    return i % 10 == 3


async def populate(db: Database, vault: Vault, n: int) -> None:
    """People 1..n under ``vault``'s key, each with one application; every tenth has an
    SMS opt-out; some counters keyed by their hashes; a sealed code in the outbox; an
    open verification code and an open delegate invitation issued under the old key."""
    now = utcnow()
    for start in range(1, n + 1, 2000):
        people, applications, opt_outs = [], [], []
        for i in range(start, min(n, start + 1999) + 1):
            people.append({
                "id": i, "name": name(i), "id_hash": vault.lookup_hash(id_number(i)),
                "id_encrypted": vault.encrypt(id_number(i)), "id_masked": mask_id(id_number(i)),
                "phone_hash": vault.lookup_hash(phone(i)),
                "phone_encrypted": vault.encrypt(phone(i)), "phone_masked": mask_phone(phone(i)),
                "township": "娄庄镇"})
            applications.append({
                "number": f"KY-{i:06d}", "beneficiary_id": i, "programme": "低保",
                "stage": "审核", "stage_date": date(2026, 11, 20), "township": "娄庄镇",
                "next_step": ""})
            if opted_out(i):
                opt_outs.append({"channel": "sms", "address": vault.lookup_hash(phone(i)),
                                 "source": "sms_reply"})
        async with db.session() as session:
            await session.execute(insert(Beneficiary), people)
            await session.execute(insert(Application), applications)
            await session.execute(insert(OptOut), opt_outs)
    async with db.session() as session:
        session.add(GuessCounter(key=f"id:{vault.lookup_hash(id_number(2))}", window_start=now,
                                 count=3))
        # (on a person the test never looks up: these counters would hold their code)
        for key in counter_keys(None, vault.lookup_hash(phone(n - 1)), now):
            session.add(GuessCounter(key=key, window_start=now, count=1))
        session.add(OutboxMessage(key="verification_code:1", kind="verification_code",
                                  beneficiary_id=1, urgent=True, state="sent",
                                  params={"code": vault.encrypt("123456")}))
        session.add(VerificationCode(openid="earlier", beneficiary_id=1,
                                     code_hash=vault.code_hash("654321", "earlier"),
                                     expires_at=now + timedelta(minutes=5)))
        session.add(DelegateInvitation(beneficiary_id=1, code_hash=vault.code_hash(
            "ABCD2345", "invite"), created_by="wechat:x", expires_at=now + timedelta(days=1)))
    if db.url.startswith("postgresql"):
        async with db.session() as session:
            await session.execute(select(func.setval("beneficiaries_id_seq", n)))


def cli(database_url: str, *args: str, previous: str | None = OLD) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUIMIN_")}
    env.update(HUIMIN_DATABASE_URL=database_url, HUIMIN_SECRET_KEY=NEW)
    if previous:
        env["HUIMIN_SECRET_KEY_PREVIOUS"] = previous
    return subprocess.Popen([sys.executable, "-m", "huimin.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def current_rows(db: Database, vault: Vault) -> tuple[list[int], list[int]]:
    """Ids of people fully under the current key, and of the others."""
    done, left = [], []
    async with db.session() as session:
        rows = (await session.execute(select(
            Beneficiary.id, Beneficiary.id_encrypted, Beneficiary.id_hash,
            Beneficiary.phone_encrypted).order_by(Beneficiary.id))).all()
    for row in rows:
        ok = (vault.is_current(row.id_encrypted) and vault.is_current(row.phone_encrypted)
              and row.id_hash == vault.lookup_hash(id_number(row.id)))
        (done if ok else left).append(row.id)
    return done, left


async def say(client: Any, text: str, openid: str) -> str:
    response = await client.post("/wechat", params=signed_query(),
                                  data=text_xml(text, openid=openid))
    assert response.status == 200
    return reply_text(await response.text())


async def look_up(client: Any, settings: Settings, i: int, openid: str) -> str:
    """The whole status lookup for person ``i``: identity, the SMS code, the code back."""
    path = settings.sms_console_file
    assert path is not None
    before = len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0
    assert "身份证号" in await say(client, "查进度", openid)
    assert "验证码已发送" in await say(client, f"{id_number(i)} {name(i)}", openid)
    for _ in range(200):
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if len(lines) > before:
            break
        await asyncio.sleep(0.05)
    assert len(lines) > before, "no code was sent"
    sms = json.loads(lines[-1])
    assert sms["to"] == mask_phone(phone(i))
    code = re.search(r"\d{6}", sms["text"])
    assert code
    return await say(client, code.group(0), openid)


def read_progress(process: subprocess.Popen[str], lines_wanted: int) -> list[str]:
    assert process.stdout is not None
    seen = []
    while len(seen) < lines_wanted:
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        if "已检查" in line:
            seen.append(line)
    return seen


async def test_rotation_killed_halfway_resumes_and_the_bot_answers_throughout(
        aiohttp_client: Any, settings: Settings) -> None:
    from huimin.wiring.apps import create_app

    db = Database(settings.database_url)
    old, new, both = Vault(OLD), Vault(NEW), Vault(NEW, OLD)
    try:
        await populate(db, old, PEOPLE)
        # Before: everything is under the old key; without it nothing can be read.
        assert (await key_status(db, new)).tables["beneficiaries"].unreadable == PEOPLE
        assert (await key_status(db, both)).tables["beneficiaries"].stale == PEOPLE

        # Run the real command and kill it once its first batches are committed.
        process = cli(settings.database_url, "keys", "rotate", "--batch", str(BATCH))
        progress = read_progress(process, 2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert f"已检查 {2 * BATCH}/{PEOPLE}" in progress[1]
        done, left = await current_rows(db, new)
        assert len(done) >= 2 * BATCH and len(left) > 2, "the kill should land partway"
        left_at_kill = left
        assert done == list(range(1, len(done) + 1))  # batches go in id order
        status = await key_status(db, both)
        assert status.tables["beneficiaries"].stale == len(left)

        # Mid-rotation the bot, restarted with both keys, finds a person already
        # rotated and one not yet rotated, and sends each their code.
        bot_settings = settings.with_overrides(secret_key=NEW, secret_key_previous=OLD)
        client = await aiohttp_client(create_app(bot_settings))
        for i, openid in ((done[0], "rotated"), (left[-1], "not-yet")):
            reply = await look_up(client, bot_settings, i, openid)
            assert "验证成功" in reply and f"KY-{i:06d}" in reply
        # A code and an invitation issued under the old key still work until they lapse.
        async with db.session() as session:
            invitation = await redeem_invitation(session, both, "ABCD2345", used_by="t")
        assert invitation is not None
        await client.close()

        # Resume: only what is left is rewritten, then the previous key may go.
        process = cli(settings.database_url, "keys", "rotate", "--batch", str(BATCH))
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        assert f"本次换了 {len(left)} 人" in out
        assert "可以删除 HUIMIN_SECRET_KEY_PREVIOUS" in out
        assert "验证码 1 个" in out  # the open one made before, until it lapses

        # Every value now opens, and every hash matches, under the new key alone.
        done, left = await current_rows(db, new)
        assert (len(done), left) == (PEOPLE, [])
        async with db.session() as session:
            addresses = set((await session.scalars(select(OptOut.address))).all())
            keys = set((await session.scalars(select(GuessCounter.key))).all())
            params = await session.scalar(select(OutboxMessage.params).where(
                OutboxMessage.key == "verification_code:1"))
        assert addresses == {new.lookup_hash(phone(i)) for i in range(1, PEOPLE + 1)
                             if opted_out(i)}
        assert f"id:{new.lookup_hash(id_number(2))}" in keys
        assert set(counter_keys(None, new.lookup_hash(phone(PEOPLE - 1)), utcnow())) <= keys
        assert not any(old.lookup_hash(id_number(2)) in key for key in keys)
        assert new.decrypt(params["code"]) == "123456"
        report = await key_status(db, new)
        assert report.stale == 0 and report.unreadable == 0
    finally:
        await db.dispose()

    # The status command agrees, and with the old key gone the bot still finds a
    # person who was not yet rotated when the command was killed.
    status = cli(settings.database_url, "keys", "status", previous=None)
    out, err = status.communicate(timeout=120)
    assert status.returncode == 0, err + out
    assert f"救助对象：共 {PEOPLE} 条，还在旧密钥下 0 条" in out
    final = settings.with_overrides(secret_key=NEW)
    client = await aiohttp_client(create_app(final))
    assert "验证成功" in await look_up(client, final, left_at_kill[0], "after")


async def test_an_import_during_rotation_moves_the_person_and_their_opt_out(
        settings: Settings) -> None:
    db = Database(settings.database_url)
    old, both = Vault(OLD), Vault(NEW, OLD)
    try:
        await populate(db, old, 5)
        async with db.session() as session:
            result = await save_application(session, both, ApplicationRecord(
                number="KY-000003", name=name(3), id_number=id_number(3), phone=phone(3),
                township="娄庄镇", programme="低保", stage="审核",
                stage_date=date(2026, 11, 20)), source="test")
        assert result == "unchanged"  # found under the old key, not added again
        async with db.session() as session:
            person = await session.get(Beneficiary, 3)
            assert person is not None
            assert person.id_hash == Vault(NEW).lookup_hash(id_number(3))
            assert Vault(NEW).decrypt(person.phone_encrypted or "") == phone(3)
            assert await session.scalar(select(func.count()).select_from(Beneficiary)) == 5
            assert await session.scalar(select(OptOut.address)) == \
                Vault(NEW).lookup_hash(phone(3))
        report = await rotate(db, both, batch=2)
        assert report.tables["beneficiaries"].stale == 4  # the imported one was done
    finally:
        await db.dispose()


def test_vault_reads_both_keys_and_writes_the_new() -> None:
    old, both = Vault(OLD), Vault(NEW, OLD)
    token = old.encrypt("34132319620817004X")
    assert both.decrypt(token) == "34132319620817004X"
    assert both.unseal(token) == ("34132319620817004X", False)
    assert both.unseal(both.encrypt("x")) == ("x", True)
    assert Vault(NEW).is_current(both.encrypt("x"))
    assert both.lookup_hashes("13900000001") == (Vault(NEW).lookup_hash("13900000001"),
                                                 old.lookup_hash("13900000001"))
    assert Vault(NEW).lookup_hashes("13900000001") == (Vault(NEW).lookup_hash("13900000001"),)
    assert both.code_matches(old.code_hash("123456", "o"), "123456", "o")
    assert both.code_matches(both.code_hash("123456", "o"), "123456", "o")
    assert not Vault(NEW).code_matches(old.code_hash("123456", "o"), "123456", "o")
    assert both.key_id == Vault(NEW).key_id and both.previous_key_id == old.key_id
    with pytest.raises(ValueError, match="differ"):
        Vault(NEW, NEW)


@pytest.mark.parametrize(("env", "message"), [
    ({"HUIMIN_SECRET_KEY": NEW, "HUIMIN_SECRET_KEY_PREVIOUS": "short"},
     "HUIMIN_SECRET_KEY_PREVIOUS must be at least 16"),
    ({"HUIMIN_SECRET_KEY": NEW, "HUIMIN_SECRET_KEY_PREVIOUS": NEW},
     "HUIMIN_SECRET_KEY_PREVIOUS must differ"),
    ({"HUIMIN_SECRET_KEY_PREVIOUS": OLD}, "HUIMIN_SECRET_KEY is not"),
])
def test_previous_key_setting_is_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)
    assert load_settings({"HUIMIN_SECRET_KEY": NEW, "HUIMIN_SECRET_KEY_PREVIOUS": OLD}
                         ).secret_key_previous == OLD


def test_rotate_without_a_previous_key_says_what_to_set(tmp_path: Path,
                                                        database_url: str) -> None:
    process = cli(database_url, "keys", "rotate", previous=None)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "HUIMIN_SECRET_KEY_PREVIOUS" in err and "Traceback" not in err


async def test_receipts_and_stop_replies_by_phone_work_mid_rotation(
        aiohttp_client: Any, settings: Settings) -> None:
    """An Aliyun receipt names the phone: found for a person still under the old key. A
    退订 reply is recorded under the hash the person's row holds (the one the notifier
    checks), and moves with the person when the rotation reaches them."""
    from huimin.wiring.apps import create_app

    db = Database(settings.database_url)
    old, new, both = Vault(OLD), Vault(NEW), Vault(NEW, OLD)
    try:
        await populate(db, old, 5)
        async with db.session() as session:
            session.add(OutboxMessage(key="payout:2:2026-11", kind="payout", beneficiary_id=2,
                                      params={}, state="sent", provider="aliyun",
                                      provider_message_id="biz-1"))
        client = await aiohttp_client(create_app(settings.with_overrides(
            secret_key=NEW, secret_key_previous=OLD, callback_token="cbtoken")))
        receipt = await client.post("/notify/callbacks/aliyun/status?token=cbtoken", json=[{
            "phone_number": phone(2), "send_time": "2026-12-01 10:00:00",
            "report_time": "2026-12-01 10:00:09", "success": True, "err_code": "DELIVERED",
            "sms_size": "1", "biz_id": "biz-1"}])
        assert receipt.status == 200
        reply = await client.post("/notify/callbacks/tencent/reply?token=cbtoken", json={
            "extend": "", "mobile": phone(4), "nationcode": "86", "sign": "示例县民政局",
            "text": "TD", "time": 1764554400})
        assert reply.status == 200
        async with db.session() as session:
            assert await session.scalar(select(OutboxMessage.state).where(
                OutboxMessage.key == "payout:2:2026-11")) == "delivered"
            assert old.lookup_hash(phone(4)) in set(
                (await session.scalars(select(OptOut.address))).all())
        await rotate(db, both, batch=2)
        async with db.session() as session:
            addresses = set((await session.scalars(select(OptOut.address))).all())
        assert addresses == {new.lookup_hash(phone(3)), new.lookup_hash(phone(4))}
    finally:
        await db.dispose()


def test_rotate_on_a_database_without_the_schema_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    process = cli(f"sqlite+aiosqlite:///{empty}", "keys", "rotate")
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "huimin init" in err and "Traceback" not in err


def test_rotation_refuses_to_run_without_the_records_kept_under_a_phone_hash(
        tmp_path: Path) -> None:
    """The core's rotation names no app: the notifier registers its opt-outs and outbox
    (notify.keys, imported by the composition root). A process that skipped that would
    move phones without their opt-outs, so it stops instead."""
    code = ("import asyncio, huimin.keys as k; from huimin.db import Database\n"
            f"try:\n    asyncio.run(k.held_hashes(Database('sqlite+aiosqlite:///{tmp_path}/k.db')))\n"
            "except k.RotationError as e:\n    print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=True)
    assert done.stdout.startswith("refused: no package has registered")
    from huimin.keys import TABLE_NAMES  # this process went through huimin.wiring

    assert TABLE_NAMES == {"beneficiaries": "救助对象", "outbox": "待发验证码"}
