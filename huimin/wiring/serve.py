"""``huimin serve --workers N``: N bot processes on one port under a small supervisor.

Each worker is an ordinary ``huimin serve`` process (``python -m huimin.wiring.worker N``) that
listens with ``SO_REUSEPORT`` on the same host and port: the kernel spreads new
connections over the workers, with no accept lock and no shared listening socket.
The supervisor (this module's :class:`Supervisor`) only starts the workers, restarts
one that dies, and on SIGTERM or SIGINT passes SIGTERM to each and waits: every worker
then stops accepting, finishes the requests it holds, and runs the bot's cleanup (late
replies, pending status work, the answered-question counts, the courier), exactly as
a single process does.

Why not gunicorn with ``aiohttp.GunicornWebWorker``: it would work, but the workers
would run a different start-up and signal path from the single-process server, and
gunicorn adds a dependency for what is here about 200 lines. Workers here are
started fresh (not forked from a parent that already imported everything), so no
event loop, database pool or Redis connection is ever shared by accident.

Several workers need shared state: the dedup ledger, conversations and locks must be
in PostgreSQL or Redis, never in a SQLite file, so N > 1 on SQLite is refused.

Metrics: the supervisor gives every worker one ``PROMETHEUS_MULTIPROC_DIR`` (the one
in the environment, or a temporary folder), emptied at start, so ``/metrics`` on any
worker reports the counts of all of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from huimin.metrics import MULTIPROC_ENV
from huimin.settings import Settings, SettingsError

log = logging.getLogger("huimin.serve")

MAX_WORKERS = 64
# A worker that dies this soon after starting has a configuration problem (no content,
# a bad setting): the supervisor stops instead of restarting it forever.
STARTUP_SECONDS = 15.0
RESTART_PAUSE = 1.0
# How long the workers get to finish their requests and write what they hold.
STOP_GRACE = 90.0
SHUTDOWN_MARGIN = 6.0  # seconds beyond the reply deadline (see shutdown_timeout)


def shutdown_timeout(settings: Settings) -> float:
    """How long aiohttp waits for the requests in progress when a bot process stops.

    A webhook request never takes longer than the reply deadline (what is left of the
    work goes on in the background and is drained after), so the deadline and a margin.
    aiohttp also waits this long for a connection accepted just as the listener closed
    that never sends a request (it does not wake such a connection), so a longer wait
    would only delay the stop: with 60 s a stop under load sometimes took a minute."""
    return settings.reply_deadline + SHUTDOWN_MARGIN


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse what cannot work: several processes on one SQLite file."""
    if not 1 <= workers <= MAX_WORKERS:
        raise SettingsError(f"--workers must be from 1 to {MAX_WORKERS}, not {workers}")
    if workers > 1 and settings.database_url.startswith("sqlite"):
        raise SettingsError(
            f"--workers {workers} needs PostgreSQL: with SQLite only one process may serve "
            "(the dedup ledger, conversations and locks must be shared). Set "
            "HUIMIN_DATABASE_URL=postgresql+asyncpg://… (and HUIMIN_REDIS_URL=redis://…), "
            "run `huimin init`, or serve with --workers 1")


def _probe_port(host: str, port: int) -> None:
    """Fail early, with the setting to change, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SettingsError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                                "(set HUIMIN_PORT or --port)") from None


class Supervisor:
    """Starts ``workers`` bot processes on one port and keeps them running."""

    def __init__(self, settings: Settings, workers: int,
                 metrics_dir: Path | None = None) -> None:
        self.settings = settings
        self.workers = workers
        self.children: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
        self.stopping = False
        self.exit_code = 0
        given = metrics_dir or os.environ.get(MULTIPROC_ENV)
        self._own_metrics_dir = not given
        self.metrics_dir = Path(given) if given else Path(
            tempfile.mkdtemp(prefix="huimin-metrics-"))

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HUIMIN_HOST"] = self.settings.host
        env["HUIMIN_PORT"] = str(self.settings.port)
        env[MULTIPROC_ENV] = str(self.metrics_dir)
        return env

    def _start(self, index: int) -> None:
        # Its own session: a Ctrl+C on the terminal reaches the supervisor only, which
        # passes one SIGTERM on (a second signal would cut a worker's cleanup short).
        child = subprocess.Popen([sys.executable, "-m", "huimin.wiring.worker", str(index)],
                                 env=self._environment(), start_new_session=True)
        self.children[index] = (child, time.monotonic())
        log.info("worker %d started (pid %d)", index, child.pid)

    def _stop(self, signum: int = signal.SIGTERM, _frame: object = None) -> None:
        if not self.stopping:
            log.info("stopping %d workers (they finish their requests first)",
                     len(self.children))
        self.stopping = True
        for child, _started in self.children.values():
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)

    def _reap(self, index: int, child: subprocess.Popen[bytes], started: float) -> None:
        from prometheus_client import multiprocess

        code = child.returncode
        multiprocess.mark_process_dead(child.pid, str(self.metrics_dir))
        del self.children[index]
        if self.stopping:
            if code:
                log.warning("worker %d exited with %s while stopping", index, code)
                self.exit_code = self.exit_code or 1
            return
        if time.monotonic() - started < STARTUP_SECONDS:
            log.error("worker %d exited with %s just after starting; stopping the others",
                      index, code)
            self.exit_code = code if code and code > 0 else 1
            self._stop()
            return
        log.error("worker %d exited with %s; starting it again", index, code)
        time.sleep(RESTART_PAUSE)
        self._start(index)

    def run(self) -> int:
        for stale in self.metrics_dir.glob("*.db"):
            stale.unlink()
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(1, self.workers + 1):
                self._start(index)
            deadline = None
            while self.children:
                for index, (child, started) in list(self.children.items()):
                    if child.poll() is not None:
                        self._reap(index, child, started)
                if self.stopping and deadline is None:
                    deadline = time.monotonic() + STOP_GRACE
                if deadline is not None and time.monotonic() > deadline:
                    for child, _started in self.children.values():
                        log.error("worker pid %d did not stop in %.0f s: killed", child.pid,
                                  STOP_GRACE)
                        child.kill()
                    self.exit_code = self.exit_code or 1
                    deadline = float("inf")
                time.sleep(0.1)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._own_metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return self.exit_code


def serve_workers(settings: Settings, workers: int, banner: str | None = None) -> int:
    """Run ``workers`` processes on settings.host:settings.port until SIGTERM/SIGINT."""
    check_workers(settings, workers)
    _probe_port(settings.host, settings.port)
    supervisor = Supervisor(settings, workers)
    if banner:
        print(banner, flush=True)
    return supervisor.run()
