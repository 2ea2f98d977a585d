"""Bodies the form parser cannot read get a 400 page and one log line, signed in or not;
an unexpected failure gets a plain 500 page and one log line, the traceback only when
debugging."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.admin.conftest import PASSWORD, add_user, login, mounted, signed_in

# aiohttp warns about the broken headers these tests send on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.multipart.BadContentDispositionHeader")
MULTIPART = "multipart/form-data; boundary=xx"
BAD_BODIES = {
    "nul-in-filename": (b'--xx\r\nContent-Disposition: form-data; name="file"; '
                        b'filename="a\x00b.csv"\r\n\r\ndata\r\n--xx--\r\n', MULTIPART),
    "no-boundary": (b'--xx\r\nContent-Disposition: form-data; name="csrf"\r\n\r\nx\r\n'
                    b'--xx--\r\n', "multipart/form-data"),
    "broken-part-header": (b"--xx\r\nContent-Disposition form-data name\r\n\r\nx\r\n--xx--\r\n",
                           MULTIPART),
    "part-without-name": (b'--xx\r\nContent-Disposition: form-data; name="csrf\r\n\r\nx\r\n'
                          b'--xx--\r\n', MULTIPART),
    "invalid-utf8-form": (b"csrf=x&username=\xff\xfe", "application/x-www-form-urlencoded"),
    "unknown-charset": (b"csrf=x", "application/x-www-form-urlencoded; charset=x-bogus"),
    "invalid-utf8-part": (b'--xx\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n'
                          b"\xff\xfe\r\n--xx--\r\n", MULTIPART),
    "part-cut-short": (b'--xx\r\nContent-Disposition: form-data; name="csrf"\r\n\r\nxxx',
                       MULTIPART),
    "no-starting-boundary": (b"hello", MULTIPART),
    "nested-multipart": (b'--xx\r\nContent-Disposition: form-data; name="a"\r\n'
                         b"Content-Type: multipart/mixed\r\n\r\nx\r\n--xx--\r\n", MULTIPART),
}


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


@pytest.mark.parametrize("name", list(BAD_BODIES))
async def test_an_unreadable_sign_in_form_is_a_400(admin_client: Any, name: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    body, content_type = BAD_BODIES[name]
    caplog.set_level(logging.INFO)
    for _ in range(2):  # repeatable, and the same every time
        caplog.clear()
        response = await admin_client.post("/admin/login", data=body,
                                           headers={"Content-Type": content_type})
        assert response.status == 400
        html = await response.text()
        assert "提交的内容格式不对" in html and "Traceback" not in html
        lines = [r for r in caplog.records if r.name.startswith("admin")]
        assert len(lines) == 1 and "unreadable form" in lines[0].getMessage()
        assert not _tracebacks(caplog)


@pytest.mark.parametrize("name", ["nul-in-filename", "invalid-utf8-form", "no-boundary"])
async def test_an_unreadable_form_is_a_400_when_signed_in_too(
        admin_client: Any, settings: Any, name: str,
        caplog: pytest.LogCaptureFixture) -> None:
    await signed_in(admin_client, settings, "caseworker")
    body, content_type = BAD_BODIES[name]
    response = await admin_client.post("/admin/registry/import", data=body,
                                       headers={"Content-Type": content_type})
    assert response.status == 400
    assert "提交的内容格式不对" in await response.text()
    assert not _tracebacks(caplog)
    assert (await admin_client.get("/admin/registry")).status == 200  # still signed in


async def test_an_unexpected_failure_is_a_plain_500_with_one_line(
        aiohttp_client: Any, settings: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # A database without the admin tables: every sign-in fails inside the handler.
    bare = settings.with_overrides(database_url=f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}")
    client = await aiohttp_client(mounted(bare))
    caplog.set_level(logging.INFO)
    response = await login(client, "wang", PASSWORD)
    assert response.status == 500
    html = await response.text()
    assert "系统出了点问题" in html and "Traceback" not in html and "sqlite" not in html
    lines = [r for r in caplog.records if r.name.startswith("admin")]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    assert lines[0].getMessage() == "admin: unexpected OperationalError on POST login_post"
    assert not _tracebacks(caplog)
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="admin")
    await login(client, "wang", PASSWORD)
    assert [r.levelno for r in _tracebacks(caplog)] == [logging.DEBUG]


async def test_a_good_form_still_works(admin_client: Any, settings: Any) -> None:
    await add_user(settings, "wang", "editor")
    assert (await login(admin_client, "wang")).status == 303
