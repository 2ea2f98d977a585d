"""The SMS provider registry: every provider is one folder named in one place, and the
worker, receipts and settings never name a provider themselves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from huimin.settings import SettingsError, load_settings
from notify.providers import PROVIDERS, callback_format, registered, unknown_provider_error
from notify.providers.plugin import ReplyReport, StatusReport

ROOT = Path(__file__).resolve().parents[2]
# The modules that must work for any provider (they may not spell a provider's name).
PROVIDER_BLIND = ["notify/worker.py", "notify/decide.py", "notify/claims.py",
                  "notify/dispatch.py", "notify/reconcile.py", "notify/health.py",
                  "notify/receipts.py", "huimin/settings.py"]
# The console provider is the settings' default (and refused outside the demo unless
# chosen on purpose), so only the providers that really send are checked.
SENDING = set(PROVIDERS) - {"console"}


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_each_registered_provider_is_a_folder_with_its_plugin(name: str) -> None:
    folder = ROOT / "notify" / "providers" / name
    assert (folder / "__init__.py").is_file() and (folder / "settings.py").is_file()
    assert registered(name).name == name


def test_unknown_names_are_refused_at_start_with_the_known_ones_listed() -> None:
    assert unknown_provider_error() == ("HUIMIN_SMS_PROVIDER must list console, tencent "
                                        "and/or aliyun, comma separated")
    with pytest.raises(SettingsError, match="must list console, tencent and/or aliyun"):
        load_settings({"HUIMIN_SMS_PROVIDER": "tencent,yunpian"})


def test_only_providers_that_push_have_callbacks() -> None:
    assert callback_format("console") is None
    assert callback_format("nobody") is None
    assert callback_format("tencent") is not None and callback_format("aliyun") is not None


def test_each_provider_reads_its_own_pushes() -> None:
    tencent, aliyun = callback_format("tencent"), callback_format("aliyun")
    assert tencent is not None and aliyun is not None
    assert tencent.status({"sid": "s-1", "report_status": "SUCCESS", "errmsg": "DELIVRD",
                           "mobile": "13800138000"}) == StatusReport(
        message_id="s-1", delivered=True, error="DELIVRD", phone="13800138000")
    assert aliyun.status({"biz_id": "b-1", "success": "false", "err_code": "MK:0001",
                          "phone_number": "13800138000", "out_id": "s0123"}) == StatusReport(
        message_id="b-1", delivered=False, error="MK:0001", phone="13800138000",
        by_phone=True, reference="s0123")
    assert tencent.reply({"text": "TD", "mobile": "13800138000"}) == ReplyReport(
        "TD", "13800138000")
    assert aliyun.reply({"content": "退订", "phone_number": "13800138000"}) == ReplyReport(
        "退订", "13800138000")
    assert dict(tencent.ack) == {"result": 0, "errmsg": "OK"}
    assert dict(aliyun.ack) == {"code": 0, "msg": "成功"}


@pytest.mark.parametrize("path", PROVIDER_BLIND)
def test_shared_modules_do_not_name_a_provider(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    named = {node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and node.value.strip().lower() in SENDING}
    assert named == set()
