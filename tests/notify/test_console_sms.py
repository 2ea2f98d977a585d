"""The console SMS provider sends nothing: it never logs a text (codes travel in
texts), says at start that nothing is sent, and outside the demo a server only uses it
when HUIMIN_SMS_PROVIDER names it on purpose."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from content.load import load_county
from huimin.settings import Settings, SettingsError, load_settings, require_sms_choice
from notify.providers import build_sms_providers
from notify.providers.console import ConsoleSms
from notify.sms import sms_message
from tests.test_cli import huimin

SECRET = "test-secret-key-0123456789"
PHONE = "13800138000"


def code_message() -> object:
    county = load_county(Settings().county_file)
    return sms_message("verification_code", county, PHONE, {"code": "493027"})


async def test_console_logs_the_masked_phone_and_template_never_the_text(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    console = ConsoleSms(tmp_path / "sms.jsonl")
    [result] = await console.send([code_message()])  # type: ignore[list-item]
    assert result.accepted
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "493027" not in logged and PHONE not in logged
    assert "138****8000" in logged and "verification_code" in logged
    assert "493027" not in capsys.readouterr().out  # not the demo: nothing printed
    [line] = (tmp_path / "sms.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["to"] == "138****8000" and "493027" in json.loads(line)["text"]


async def test_the_demo_prints_the_text_for_whoever_tries_it(
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    [console] = build_sms_providers(Settings(demo=True), load_county(Settings().county_file))
    await console.send([code_message()])  # type: ignore[attr-defined]
    printed = capsys.readouterr().out
    assert "493027" in printed and "演示短信" in printed and PHONE not in printed
    assert "493027" not in "\n".join(r.getMessage() for r in caplog.records)


def test_using_the_console_provider_is_announced(caplog: pytest.LogCaptureFixture) -> None:
    build_sms_providers(Settings(sms_provider=("console",)), {})
    assert any("no SMS is really sent" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


@pytest.mark.parametrize(("environ", "refused"), [
    ({"HUIMIN_SECRET_KEY": SECRET}, True),
    ({"HUIMIN_SECRET_KEY": SECRET, "HUIMIN_SMS_PROVIDER": "console"}, False),
    ({"HUIMIN_SECRET_KEY": SECRET, "HUIMIN_SMS_PROVIDER": "tencent,console"}, False),
    ({"HUIMIN_SECRET_KEY": SECRET, "HUIMIN_DEMO": "1"}, False),
    ({}, False),  # without the secret key nothing sends SMS
])
def test_console_only_when_chosen_on_purpose(environ: dict[str, str], refused: bool) -> None:
    settings = load_settings(environ)
    if refused:
        with pytest.raises(SettingsError, match="HUIMIN_SMS_PROVIDER"):
            require_sms_choice(settings)
    else:
        require_sms_choice(settings)


@pytest.mark.parametrize("command", [("serve",), ("notify", "run", "--once")])
def test_serve_and_notify_run_refuse_the_unchosen_console(database_url: str,
                                                          command: tuple[str, ...]) -> None:
    result = huimin(*command, database_url=database_url,
                    extra_env={"HUIMIN_SECRET_KEY": SECRET, "HUIMIN_WECHAT_TOKEN": "token123"})
    assert result.returncode == 2
    assert "HUIMIN_SMS_PROVIDER is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_notify_run_with_the_console_chosen_warns_and_runs(database_url: str) -> None:
    result = huimin("notify", "run", "--once", database_url=database_url,
                    extra_env={"HUIMIN_SECRET_KEY": SECRET, "HUIMIN_SMS_PROVIDER": "console"})
    assert result.returncode == 0, result.stderr
    assert "no SMS is really sent" in result.stderr
