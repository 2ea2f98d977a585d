"""Settings are read once into typed values, and every HUIMIN_* variable is checked when
they are read (a bad value stops the start with a message naming the variable)."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from huimin.settings import Settings, SettingsError, load_settings


def test_values_are_typed_when_read() -> None:
    settings = load_settings({
        "HUIMIN_QUIET_HOURS": "22:30-7:00", "HUIMIN_RECHECK_DAYS": "30, 7,1",
        "HUIMIN_WECHAT_TEMPLATES": "payout=TPL-1, recheck_due=TPL-2",
        "HUIMIN_SMS_PROVIDER": "console, console", "HUIMIN_PORT": "9090",
        "HUIMIN_ADMIN_SECURE_COOKIES": "yes", "HUIMIN_ADMIN_UPLOAD_DIR": "/srv/uploads",
        "HUIMIN_ADMIN_TRUST_FORWARDED": "on", "HUIMIN_ADMIN_TRUSTED_HOPS": "2",
        "HUIMIN_LOG_FORMAT": "JSON"})
    assert settings.quiet_hours == (time(22, 30), time(7, 0))
    assert settings.recheck_days == (30, 7, 1)
    assert settings.wechat_templates == {"payout": "TPL-1", "recheck_due": "TPL-2"}
    assert settings.sms_provider == ("console",)
    assert settings.port == 9090
    assert settings.admin_secure_cookies is True
    assert settings.admin_upload_dir == Path("/srv/uploads")
    assert (settings.admin_trust_forwarded, settings.admin_trusted_hops) == (True, 2)
    assert settings.log_format == "json"


def test_defaults_are_typed_too() -> None:
    settings = load_settings({})
    assert settings.quiet_hours == (time(21, 0), time(8, 0))
    assert settings.recheck_days == (14, 3)
    assert settings.wechat_templates == {} and settings.sms_tencent_templates == {}
    assert settings.admin_upload_dir is None and settings.admin_secure_cookies is False
    assert settings.log_format == "text" and not settings.given("sms_provider")


@pytest.mark.parametrize(("variable", "value"), [
    ("HUIMIN_ADMIN_SECURE_COOKIES", "maybe"),   # was read loosely where used (off)
    ("HUIMIN_LOG_FORMAT", "yaml"),              # was checked only by serve and doctor
    ("HUIMIN_QUIET_HOURS", "25:00-08:00"),      # passed the pattern, failed later
    ("HUIMIN_QUIET_HOURS", "21:00"),
    ("HUIMIN_RECHECK_DAYS", "14;3"),
    ("HUIMIN_SMS_TENCENT_TEMPLATES", "payout"),
    ("HUIMIN_WECHAT_TEMPLATES", "payout=,x=1"),
    ("HUIMIN_PORT", "eighty"),
    ("HUIMIN_REPLY_DEADLINE", "nan"),
    ("HUIMIN_ADMIN_TRUSTED_HOPS", "9"),
    ("HUIMIN_SMS_PROVIDER", " , "),
])
def test_a_bad_value_stops_the_start_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: value})


def test_an_override_given_as_text_is_read_like_the_variable() -> None:
    settings = Settings().with_overrides(wechat_templates="case_reply=TPL-CASE",
                                         quiet_hours="20:00-09:00", secret_key=None)
    assert settings.wechat_templates == {"case_reply": "TPL-CASE"}
    assert settings.quiet_hours == (time(20, 0), time(9, 0))
    assert settings.with_overrides(wechat_templates=None).wechat_templates == {}
    with pytest.raises(SettingsError, match="HUIMIN_RECHECK_DAYS"):
        Settings().with_overrides(recheck_days="soon")
