"""The `huimin` command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def huimin(*args: str, database_url: str | None = None, stdin: str | None = None,
           extra_env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUIMIN_")}
    if database_url:
        env["HUIMIN_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    if cwd is not None:  # the project must stay importable from another folder
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "huimin.cli", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=120, cwd=cwd)


def test_ask_prints_the_answer(database_url: str) -> None:
    result = huimin("ask", "低保标准是多少", database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "7500" in result.stdout


def test_ask_json_reads_questions_from_stdin_in_order(database_url: str) -> None:
    questions = ["低保标准是多少", "低保", "明天会下雨吗", "", "五保户是啥"]
    result = huimin("ask", "--json", database_url=database_url, stdin="\n".join(questions))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["question"] for line in lines] == [q for q in questions if q]
    for line in lines:
        assert set(line) == {"question", "faq_id", "score", "choices", "answer"}
    standard, vague, weather, tekun = lines
    assert standard["faq_id"] == "dibao-standard" and standard["choices"] == []
    assert vague["faq_id"] is None and 1 <= len(vague["choices"]) <= 3
    assert "您是想问" in vague["answer"]
    assert weather["faq_id"] is None and weather["choices"] == []
    assert "0000-1234567" in weather["answer"]  # the county hotline
    assert tekun["faq_id"] == "tekun-what"


def test_ask_on_an_empty_database_says_what_to_do(tmp_path: Path) -> None:
    result = huimin("ask", "低保", database_url=f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    assert result.returncode == 2
    assert "huimin init" in result.stderr
    assert "Traceback" not in result.stderr


def test_content_check_passes_on_shipped_content() -> None:
    result = huimin("content", "check")
    assert result.returncode == 0, result.stdout
    assert "31 entries" in result.stdout and result.stdout.rstrip().endswith("ok")


def test_content_check_reports_problems_and_fails(tmp_path: Path) -> None:
    (tmp_path / "faq").mkdir()
    (tmp_path / "faq" / "x.yaml").write_text("- id: Bad Id\n  question: 问\n", encoding="utf-8")
    result = huimin("content", "check", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert "faq/x.yaml: Bad Id: missing field 'alternatives'" in result.stdout
    assert "catalogue entry is missing" in result.stdout


def test_content_export(database_url: str, tmp_path: Path) -> None:
    result = huimin("content", "export", str(tmp_path / "out"), database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "faq" / "dibao.yaml").is_file()
    check = huimin("content", "check", "--dir", str(tmp_path / "out"))
    assert check.returncode == 0, check.stdout


def test_wechat_menu_prints_the_custom_menu_json() -> None:
    result = huimin("wechat", "menu")
    assert result.returncode == 0
    menu = json.loads(result.stdout)
    assert 1 <= len(menu["button"]) <= 3
    for button in menu["button"]:
        assert len(button["sub_button"]) <= 5
        for sub in button["sub_button"]:
            assert sub["type"] == "click" and sub["key"]


@pytest.mark.parametrize(("name", "value", "message"), [
    ("HUIMIN_DATABASE_URL", "mysql://x", "HUIMIN_DATABASE_URL must start with"),
    ("HUIMIN_WECHAT_AES_KEY", "tooshort", "HUIMIN_WECHAT_AES_KEY must be the 43-character"),
    ("HUIMIN_PORT", "eighty", "HUIMIN_PORT must be a number"),
    ("HUIMIN_REDIS_URL", "localhost:6379", "HUIMIN_REDIS_URL must start with redis://"),
    ("HUIMIN_WECHAT_TOKEN", "has space", "HUIMIN_WECHAT_TOKEN must be 3 to 32"),
])
def test_bad_settings_are_named_clearly(name: str, value: str, message: str) -> None:
    result = huimin("wechat", "menu", extra_env={name: value})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_without_token_is_refused(database_url: str) -> None:
    result = huimin("serve", database_url=database_url)
    assert result.returncode == 2
    assert "HUIMIN_WECHAT_TOKEN is required" in result.stderr


def test_import_applications_reports_rows_and_is_idempotent(database_url: str,
                                                            tmp_path: Path) -> None:
    from huimin.wiring.cli import DEMO_REGISTRY

    env = {"HUIMIN_SECRET_KEY": "test-secret-key-0123456789"}
    first = huimin("import", "applications", str(DEMO_REGISTRY), database_url=database_url,
                   extra_env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "出错 0 行" in first.stdout and "新增 10 条" in first.stdout
    again = huimin("import", "applications", str(DEMO_REGISTRY), database_url=database_url,
                   extra_env=env)
    assert "新增 0 条" in again.stdout and "未变 10 条" in again.stdout
    bad = tmp_path / "bad.csv"
    lines = DEMO_REGISTRY.read_text(encoding="utf-8").splitlines()
    bad.write_text("\n".join([lines[0], lines[1].replace("34132319620817004X",
                                                         "341323196208170041")]),
                   encoding="utf-8")
    result = huimin("import", "applications", str(bad), database_url=database_url,
                    extra_env=env)
    assert result.returncode == 1
    assert "第2行" in result.stdout and "校验位" in result.stdout
    assert "341323196208170041" not in result.stdout


def test_import_needs_the_secret_key(database_url: str) -> None:
    from huimin.wiring.cli import DEMO_REGISTRY

    result = huimin("import", "applications", str(DEMO_REGISTRY), database_url=database_url)
    assert result.returncode == 2
    assert "HUIMIN_SECRET_KEY is required" in result.stderr


def test_notify_plan_run_once_and_preview(database_url: str, tmp_path: Path) -> None:
    from huimin.wiring.cli import DEMO_REGISTRY

    env = {"HUIMIN_SECRET_KEY": "test-secret-key-0123456789",
           "HUIMIN_SMS_PROVIDER": "console",  # on purpose: it sends nothing
           "HUIMIN_SMS_CONSOLE_FILE": str(tmp_path / "sms.jsonl"),
           "HUIMIN_QUIET_HOURS": "00:00-00:00"}  # whatever the clock says in CI
    # The demo list's recheck dates are calendar dates: moved 200 days past today, so that
    # no recheck reminder is due whatever the date (in March 2027 one would be).
    import csv
    from datetime import timedelta

    from huimin.clock import local_today

    with DEMO_REGISTRY.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    column = rows[0].index("复核日期")
    later = (local_today() + timedelta(days=200)).isoformat()
    for row in rows[1:]:
        row[column] = later if row[column] else ""
    registry = tmp_path / "applications.csv"
    with registry.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    huimin("import", "applications", str(registry), database_url=database_url,
           extra_env=env)
    payouts = DEMO_REGISTRY.with_name("payouts.csv")
    imported = huimin("import", "payouts", str(payouts), database_url=database_url,
                      extra_env=env)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    planned = huimin("notify", "plan", database_url=database_url, extra_env=env)
    assert planned.returncode == 0 and "payout 3" in planned.stdout
    again = huimin("notify", "plan", database_url=database_url, extra_env=env)
    assert "新排队 0 条" in again.stdout
    sent = huimin("notify", "run", "--once", database_url=database_url, extra_env=env)
    assert sent.returncode == 0, sent.stderr
    # One of the three has no phone and no WeChat: not sent, and said so.
    assert "已发送 2 条" in sent.stdout and "无联系方式） 1 条" in sent.stdout
    assert "INFO sqlalchemy" not in sent.stderr
    lines = (tmp_path / "sms.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all("****" in json.loads(line)["to"] for line in lines)
    preview = huimin("notify", "preview")
    assert preview.returncode == 0 and "1条计费" in preview.stdout
    # What to register with each provider: Tencent numbers the parameters in order.
    assert "腾讯云模板正文：您的{1}{2}{3}元已到一卡通" in preview.stdout
    assert "阿里云模板正文：您的${programme}${month}${amount}元" in preview.stdout
    assert "== verification_code" in preview.stdout


def test_notify_run_stops_cleanly_on_sigterm(database_url: str) -> None:
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUIMIN_")}
    env.update(HUIMIN_DATABASE_URL=database_url, HUIMIN_SECRET_KEY="test-secret-key-0123456789",
               HUIMIN_SMS_PROVIDER="console")
    worker = subprocess.Popen([sys.executable, "-m", "huimin.cli", "notify", "run", "--quiet"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    # Started once it has warned about the console provider (on a busy machine imports
    # alone can take several seconds); then let it poll the empty queue.
    started = []
    while not any("console" in line for line in started):
        started.append(worker.stderr.readline())
        assert started[-1], started  # it ended before starting
    time.sleep(1)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "已发送 0 条" in out


# ----- read-only commands, the demo's settings, log times ---------------------------------
@pytest.mark.parametrize("command", [("ask", "低保标准是多少"), ("content", "export", "out"),
                                     ("keys", "status")])
def test_a_read_only_command_creates_no_database(tmp_path: Path,
                                                 command: tuple[str, ...]) -> None:
    """With no setting, the default database (./huimin.db) is missing: the command says
    which file it looked at and how to reach the demo's, and creates nothing."""
    (tmp_path / "huimin-demo").mkdir()
    result = huimin(*command, cwd=tmp_path,
                    extra_env={"HUIMIN_SECRET_KEY": "test-secret-key-0123456789"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no database at {tmp_path / 'huimin.db'}" in result.stderr
    assert "HUIMIN_DATABASE_URL is not set" in result.stderr
    assert "HUIMIN_DATABASE_URL=sqlite+aiosqlite:///huimin-demo/huimin.db" in result.stderr
    assert 'eval "$(huimin demo --env)"' in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huimin-demo"]


def test_an_empty_database_is_named(tmp_path: Path) -> None:
    (tmp_path / "old.db").touch()
    result = huimin("ask", "低保", database_url="sqlite+aiosqlite:///old.db", cwd=tmp_path)
    assert result.returncode == 2
    assert "run `huimin init` first" in result.stderr
    assert f"database: {tmp_path / 'old.db'}\n" in result.stderr


def _exports(text: str) -> dict[str, str]:
    import shlex

    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0]
    return env


def test_the_cli_runs_against_the_demo_with_its_printed_settings(tmp_path: Path) -> None:
    """`huimin demo --env` prints the demo's settings (its database, by full path, and
    its secret key), so the notifier can be run on the demo's data."""
    printed = huimin("demo", "--env", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    env = _exports(printed.stdout)
    demo_db = tmp_path / "huimin-demo" / "huimin.db"
    assert env["HUIMIN_DATABASE_URL"] == f"sqlite+aiosqlite:///{demo_db}"
    assert len(env["HUIMIN_SECRET_KEY"]) >= 16 and env["HUIMIN_DEMO"] == "true"
    from huimin.wiring.cli import DEMO_REGISTRY

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env["HUIMIN_QUIET_HOURS"] = "00:00-00:00"  # whatever the clock says
    for step in (("init",), ("import", "applications", str(DEMO_REGISTRY)),
                 ("import", "payouts", str(DEMO_REGISTRY.with_name("payouts.csv"))),
                 ("notify", "plan"), ("notify", "run", "--once", "--quiet")):
        result = huimin(*step, extra_env=env, cwd=elsewhere)
        assert result.returncode == 0, (step, result.stdout + result.stderr)
    assert "已发送 2 条" in result.stdout
    assert demo_db.is_file() and list(elsewhere.iterdir()) == []


def test_log_lines_are_in_china_time_with_the_offset(database_url: str) -> None:
    """Whatever the server's zone (TZ), each line starts with China time and +0800."""
    from datetime import UTC, datetime, timedelta

    before = datetime.now(UTC)
    result = huimin("notify", "run", "--once", "--quiet", database_url=database_url,
                    extra_env={"HUIMIN_SECRET_KEY": "test-secret-key-0123456789",
                               "HUIMIN_SMS_PROVIDER": "console",
                               "TZ": "America/New_York"})
    after = datetime.now(UTC)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if " WARNING " in line]
    assert lines, result.stderr
    for line in lines:
        stamp = datetime.strptime(line[:24], "%Y-%m-%d %H:%M:%S%z")
        assert line[19:24] == "+0800"
        assert before - timedelta(seconds=1) <= stamp <= after + timedelta(seconds=1)
