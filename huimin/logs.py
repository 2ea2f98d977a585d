"""Logging for every ``huimin`` process: one line per record, timed in China time
(Asia/Shanghai) with the offset printed, e.g. ``2026-12-02 11:05:00+0800``, the
zone the staff UI and the bureau use, whatever the server's own clock zone is."""

from __future__ import annotations

import logging
from datetime import datetime

from huimin.clock import CHINA

TIME_FORMAT = "%Y-%m-%d %H:%M:%S%z"
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# At INFO/DEBUG these print SQL and its parameters (tokens, hashes): never.
QUIET = ("aiosqlite", "asyncpg", "sqlalchemy.engine", "alembic")


class ChinaTimeFormatter(logging.Formatter):
    """Formats ``%(asctime)s`` in Asia/Shanghai with its offset (+0800)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, CHINA)
        return moment.strftime(datefmt or TIME_FORMAT)


def configure_logging(level: str) -> None:
    """Log to standard error in China time at ``level`` (HUIMIN_LOG_LEVEL)."""
    handler = logging.StreamHandler()
    handler.setFormatter(ChinaTimeFormatter(LINE_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
