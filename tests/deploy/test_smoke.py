"""The deployment layout, run for real: Debian's nginx (TLS, deploy/nginx's site) in front
of two bot workers, the admin and the notifier on PostgreSQL + Redis.

A signed message through nginx gets its answer, an admin login works through nginx
(and /admin is refused outside the allow-list), and a payout reminder reaches the local
fake Tencent SMS server. Skipped without nginx or without the test database and Redis.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import SECRET_KEY
from tests.deploy.helpers import (
    COMMANDS,
    NEEDS_SHARED_STATE,
    ROOT,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    base_environment,
    free_port,
    start,
    stop,
    wait_ready,
)
from tests.fakes.sms_servers import (
    TENCENT_APP_ID,
    TENCENT_SECRET_ID,
    TENCENT_SECRET_KEY,
    TencentFake,
)
from tests.wechat import TOKEN, reply_text, signed_query, text_xml, urlq

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                  else None)
pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install "
                       "nginx-light); .ci/run installs it"),
    pytest.mark.skipif(not (TEST_DATABASE_URL and TEST_REDIS_URL), reason=NEEDS_SHARED_STATE),
]
SITE = ROOT / "deploy" / "nginx"
KINDS = ("verification_code", "payout", "recheck_due", "recheck_overdue", "status_change")
ADMIN_PASSWORD = "Lanhua-Qiaoqiao-Kai-2026!"
PHONE = "13800131001"  # 王德福 in content/demo/applications.csv


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wx.example.gov.cn")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"deploy/nginx no longer has {old!r} exactly once"
    return text.replace(old, new)


def nginx_config(folder: Path, https: int, http: int, bot: int, admin: int) -> Path:
    """deploy/nginx's files with only the ports, paths and allow-list changed."""
    cert, key = self_signed(folder)
    site = (SITE / "huimin.conf").read_text(encoding="utf-8")
    for old, new in (("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;"),
                     ("listen 80;", f"listen 127.0.0.1:{http};"),
                     ("/etc/ssl/huimin/fullchain.pem", str(cert)),
                     ("/etc/ssl/huimin/privkey.pem", str(key)),
                     ("/var/log/nginx/huimin.access.log", str(folder / "access.log")),
                     ("/var/log/nginx/huimin.error.log", str(folder / "error.log")),
                     ("/etc/nginx/huimin-admin-allow.conf", str(folder / "allow.conf"))):
        site = _replace_once(site, old, new)
    upstreams = (SITE / "huimin-upstreams.conf").read_text(encoding="utf-8")
    upstreams = _replace_once(upstreams, "127.0.0.1:8080", f"127.0.0.1:{bot}")
    upstreams = _replace_once(upstreams, "127.0.0.1:8081", f"127.0.0.1:{admin}")
    (folder / "allow.conf").write_text("allow 127.0.0.1;\ndeny all;\n", encoding="utf-8")
    (folder / "site.conf").write_text(site, encoding="utf-8")
    (folder / "upstreams.conf").write_text(upstreams, encoding="utf-8")
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = folder / "nginx.conf"
    main.write_text(f"""{user}worker_processes 1;
pid {folder / 'nginx.pid'};
error_log {folder / 'error.log'} info;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
    include {folder / 'upstreams.conf'};
    include {folder / 'site.conf'};
}}
""", encoding="utf-8")
    return main


def _run(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "huimin.cli", *args], env=env, cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"huimin {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _quiet_hours_elsewhere() -> str:
    """A quiet window two hours from now (China time), so reminders go out at once."""
    now = dt.datetime.now(ZoneInfo("Asia/Shanghai"))
    start, end = now + dt.timedelta(hours=2), now + dt.timedelta(hours=3)
    return f"{start:%H:%M}-{end:%H:%M}"


@pytest.fixture
async def layout(database_url: str, settings, tmp_path: Path, aiohttp_server):  # type: ignore[no-untyped-def]
    tencent = TencentFake()
    endpoint = await tencent.start(aiohttp_server)
    https, http, bot, admin = free_port(), free_port(), free_port(), free_port()
    env = base_environment(
        HUIMIN_DATABASE_URL=database_url, HUIMIN_REDIS_URL=TEST_REDIS_URL or "",
        HUIMIN_WECHAT_TOKEN=TOKEN, HUIMIN_SECRET_KEY=SECRET_KEY,
        HUIMIN_SMS_PROVIDER="tencent", HUIMIN_SMS_TENCENT_ENDPOINT=endpoint,
        HUIMIN_SMS_TENCENT_SECRET_ID=TENCENT_SECRET_ID,
        HUIMIN_SMS_TENCENT_SECRET_KEY=TENCENT_SECRET_KEY,
        HUIMIN_SMS_TENCENT_APP_ID=TENCENT_APP_ID,
        HUIMIN_SMS_TENCENT_TEMPLATES=",".join(f"{k}={100 + i}" for i, k in enumerate(KINDS)),
        HUIMIN_QUIET_HOURS=_quiet_hours_elsewhere(), HUIMIN_LOG_LEVEL="WARNING",
        HUIMIN_ADMIN_UPLOAD_DIR=str(tmp_path))
    _run(COMMANDS["init"], env)
    _run(["import", "applications", str(ROOT / "content" / "demo" / "applications.csv")], env)
    month = dt.datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    payouts = tmp_path / "payouts.csv"
    payouts.write_text("姓名,身份证号,项目,发放月份,金额（元）\n"
                       f"王德福,341323195503120032,低保,{month},650.00\n", encoding="utf-8")
    _run(["import", "payouts", str(payouts)], env)
    _run(["admin", "create-user", "smokeadmin", "--role", "admin", "--password-stdin"], env,
         stdin=ADMIN_PASSWORD + "\n")
    processes, logs = [], []
    for name, port, extra in (
            ("bot", bot, {}),
            ("admin", admin, {"HUIMIN_ADMIN_TRUST_FORWARDED": "true",
                              "HUIMIN_ADMIN_SECURE_COOKIES": "true"}),
            ("notifier", None, {})):
        log = tmp_path / f"{name}.log"
        own = {**env, **extra, **({"HUIMIN_PORT": str(port)} if port else {})}
        processes.append(await start(COMMANDS[name], own, log))
        logs.append(log)
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    conf = nginx_config(nginx_dir, https, http, bot, admin)
    checked = subprocess.run([NGINX or "nginx", "-t", "-p", str(nginx_dir), "-c", str(conf)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    nginx = await asyncio.create_subprocess_exec(
        NGINX or "nginx", "-p", str(nginx_dir), "-c", str(conf), "-g", "daemon off;",
        stderr=asyncio.subprocess.DEVNULL)
    try:
        await wait_ready(f"http://127.0.0.1:{bot}/readyz", processes[0], logs[0], workers=2)
        await wait_ready(f"http://127.0.0.1:{admin}/admin/login", processes[1], logs[1])
        _run(["notify", "plan"], env)  # queued now; the running notifier sends it
        yield {"https": https, "http": http, "tencent": tencent, "logs": logs,
               "nginx_dir": nginx_dir}
    finally:
        nginx.terminate()
        await nginx.wait()
        codes = [await stop(p) for p in processes]
        assert codes == [0, 0, 0], "\n".join(log.read_text() for log in logs)


async def test_nginx_in_front_of_workers_admin_and_notifier(layout) -> None:  # type: ignore[no-untyped-def]
    base = f"https://127.0.0.1:{layout['https']}"
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False),
                                     cookie_jar=jar) as http:
        # The WeChat path: a signed message gets its answer through nginx.
        query = urlq(signed_query(openid="smoke-user"))
        body = text_xml("低保怎么申请", openid="smoke-user").encode()
        async with http.post(f"{base}/wechat?{query}", data=body) as response:
            assert response.status == 200
            assert "低保" in reply_text(await response.text())
            assert "X-Huimin-Worker" not in response.headers
        async with http.post(f"{base}/wechat?{query}", data=b"<xml>" + b"x" * 100_000) as big:
            assert big.status == 413  # nginx's body limit
        for private in ("/metrics", "/readyz", "/healthz"):
            async with http.get(base + private) as response:
                assert response.status == 404, private
        async with http.get(f"http://127.0.0.1:{layout['http']}/wechat",
                            allow_redirects=False) as response:
            assert response.status == 301
            assert response.headers["Location"].startswith("https://")
        # The admin: sign in through nginx.
        async with http.get(f"{base}/admin/login") as response:
            assert response.status == 200
            csrf = re.search(r'name="csrf" value="([^"]+)"', await response.text())
        assert csrf
        form = {"csrf": csrf.group(1), "next": "", "username": "smokeadmin",
                "password": ADMIN_PASSWORD}
        async with http.post(f"{base}/admin/login", data=form,
                             allow_redirects=False) as response:
            assert response.status == 303, await response.text()
            assert "/admin/" in response.headers["Location"]
            cookie = response.headers.get("Set-Cookie", "")
            assert "Secure" in cookie and "HttpOnly" in cookie
        async with http.get(f"{base}/admin/") as response:
            assert response.status == 200
            page = await response.text()
            assert "smokeadmin" in page or "退出" in page
    # Outside the allow-list (another loopback address): refused by nginx.
    outside = aiohttp.TCPConnector(ssl=False, local_addr=("127.0.0.2", 0))
    async with (aiohttp.ClientSession(connector=outside) as outsider,
                outsider.get(f"https://127.0.0.1:{layout['https']}/admin/login") as response):
        assert response.status == 403
    # The reminder: planned, then sent by the running notifier to the fake provider.
    tencent = layout["tencent"]
    for _ in range(300):
        if any(d["phone"].endswith(PHONE) for d in tencent.delivered):
            break
        await asyncio.sleep(0.1)
    delivered = [d for d in tencent.delivered if d["phone"].endswith(PHONE)]
    assert delivered and delivered[0]["template"] == "101", tencent.calls
    assert tencent.problems == []
    # nginx passed the client address and a request id on.
    access = (layout["nginx_dir"] / "access.log").read_text()
    assert "POST /wechat" in access and "rid=" in access
