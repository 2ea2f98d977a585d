"""Running ``huimin`` commands as real processes on free local ports (deploy tests)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
TEST_DATABASE_URL = os.environ.get("HUIMIN_TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("HUIMIN_TEST_REDIS_URL")
NEEDS_SHARED_STATE = "needs HUIMIN_TEST_DATABASE_URL (PostgreSQL) and HUIMIN_TEST_REDIS_URL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any HUIMIN_* variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUIMIN_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(settings)
    return env


async def start(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """``huimin ARGS`` in its own session, output to ``log``."""
    out = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "huimin.cli", *args, env=env, cwd=ROOT, stdout=out,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    finally:
        out.close()


async def wait_ready(url: str, process: asyncio.subprocess.Process, log: Path,
                     timeout: float = 90.0, workers: int = 1) -> None:
    """Until ``url`` answers 200 (from ``workers`` distinct workers, when more than one)."""
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    connector: Any = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        while loop.time() < deadline:
            if process.returncode is not None:
                raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()}")
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                    if response.status == 200:
                        seen.add(response.headers.get("X-Huimin-Worker", "-"))
                        if len(seen) >= workers:
                            return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} not ready in {timeout:.0f} s:\n{log.read_text()}")


async def stop(process: asyncio.subprocess.Process, timeout: float = 60.0) -> int:
    """SIGTERM, then wait; the exit code."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    return process.returncode if process.returncode is not None else -1


# The commands every deployment runs (systemd units, compose, the smoke test); host and
# port come from HUIMIN_HOST / HUIMIN_PORT in each.
COMMANDS = {
    "init": ["init"],
    "bot": ["serve", "--workers", "2"],
    "notifier": ["notify", "run", "--quiet"],
    "admin": ["admin", "serve"],
}
