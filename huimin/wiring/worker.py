"""One bot worker of ``huimin serve --workers N`` (started by :mod:`huimin.wiring.serve`'s
supervisor as ``python -m huimin.wiring.worker INDEX``; settings from the environment): the same
server as a single ``huimin serve``, listening with ``SO_REUSEPORT`` beside the others."""

from __future__ import annotations

import logging
import os
import sys

from huimin.settings import SettingsError
from huimin.wiring.serve import shutdown_timeout

log = logging.getLogger("huimin.serve")


def run_worker(index: int) -> int:
    """One worker (started by the supervisor, settings from the environment)."""
    from aiohttp import web

    from bot.app import WORKER, ContentMissing
    from huimin.logs import configure_logging
    from huimin.metrics import install_log_format
    from huimin.settings import load_settings
    from huimin.wiring.apps import create_app

    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        install_log_format(settings.log_format)
        app = create_app(settings)
    except SettingsError as exc:
        print(f"huimin: {exc}", file=sys.stderr)
        return 2
    app[WORKER] = index

    async def announce(_app: web.Application) -> None:
        log.info("worker %d (pid %d) listening on %s:%d", index, os.getpid(), settings.host,
                 settings.port)

    app.on_startup.append(announce)
    try:
        web.run_app(app, host=settings.host, port=settings.port, reuse_port=True,
                    print=None, access_log=None,
                    shutdown_timeout=shutdown_timeout(settings))
    except ContentMissing as exc:
        print(f"huimin: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"huimin: cannot listen on {settings.host}:{settings.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_worker(int(sys.argv[1])))
