"""deploy/ and .env.example agree with the code and with the smoke test (Docker is not
available here, so the compose file is checked by reading it)."""

from __future__ import annotations

import configparser
import re
import shlex
from dataclasses import fields
from pathlib import Path

import yaml

from huimin.settings import PREFIX, Settings
from tests.deploy.helpers import COMMANDS, ROOT

DEPLOY = ROOT / "deploy"
SOURCES = ("huimin", "bot", "notify", "admin", "content")
_NAME = re.compile(r"\bHUIMIN_[A-Z0-9_]*[A-Z0-9]\b")


def settings_read_by_the_code() -> set[str]:
    names = {PREFIX + f.name.upper() for f in fields(Settings) if f.name != "extra"}
    for package in SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            names |= set(_NAME.findall(path.read_text(encoding="utf-8")))
    return names


def test_env_example_lists_every_setting_the_code_reads() -> None:
    listed = set(re.findall(r"^#?(HUIMIN_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(
        encoding="utf-8"), re.M))
    missing = settings_read_by_the_code() - listed
    assert not missing, f"add to .env.example: {sorted(missing)}"
    unknown = listed - settings_read_by_the_code()
    assert not unknown, f"not read by any code: {sorted(unknown)}"


def test_compose_runs_the_smoke_tests_commands() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "init", "bot", "notifier", "admin", "nginx"}
    for name, command in COMMANDS.items():
        assert services[name]["command"] == command, name
        assert services[name]["image"] == "huimin:latest"
    assert services["bot"]["environment"]["HUIMIN_REDIS_URL"].startswith("redis://redis:")
    assert services["admin"]["environment"]["HUIMIN_ADMIN_TRUST_FORWARDED"] == "true"
    mounted = {v.split(":")[0] for v in services["nginx"]["volumes"]}
    assert {"./nginx/huimin.conf", "./nginx/huimin-admin-allow.conf"} <= mounted
    for volume in mounted:
        assert volume == "./tls" or (DEPLOY / volume).is_file(), volume
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["huimin"]' in dockerfile


def _unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / name, encoding="utf-8")
    return unit


def test_systemd_units_run_the_same_commands() -> None:
    for name, unit_file in (("bot", "huimin-bot.service"),
                            ("notifier", "huimin-notifier.service"),
                            ("admin", "huimin-admin.service")):
        service = _unit(unit_file)["Service"]
        argv = shlex.split(service["ExecStart"])
        assert Path(argv[0]).name == "huimin"
        assert argv[1:] == COMMANDS[name], unit_file
        assert service["KillMode"] == "mixed"  # one SIGTERM, to the main process
    plan = _unit("huimin-plan.service")["Service"]
    assert shlex.split(plan["ExecStart"])[1:] == ["notify", "plan"]
