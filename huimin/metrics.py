"""Prometheus metrics and request-scoped logging for the bot processes.

Everything counted on the reply path is a counter or a histogram in memory: no
database or Redis call per message. The outbox depth is read from the database
only when ``/metrics`` is scraped.

With several workers (``huimin serve --workers N``) the supervisor gives every
worker the same ``PROMETHEUS_MULTIPROC_DIR`` before it starts Python, so
prometheus-client keeps each process's values in a file there and ``/metrics``
on any worker reports the sum over all of them. A single process keeps them in
memory. The notifier (``huimin notify run``) counts its sends in its own process:
they appear here only for the sends the bot processes make themselves (urgent
codes and late replies).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from huimin.logs import ChinaTimeFormatter

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

MESSAGES = Counter("huimin_messages", "WeChat messages handled, by message kind and band "
                   "(answer, choices, unknown, referred; none when no FAQ match was made)",
                   ["kind", "band"])
REPLY_SECONDS = Histogram("huimin_reply_seconds", "Time to answer a POST /wechat",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0,
                                   5.0, 10.0))
LATE_REPLIES = Counter("huimin_late_replies", "Replies that missed the reply deadline and "
                       "were queued for a customer-service message")
DEDUP_HITS = Counter("huimin_dedup_hits", "WeChat retries answered from the ledger "
                     "(the message was already claimed)")
SENDS = Counter("huimin_sends", "Outbox messages settled, by provider (or channel) and "
                "result (sent, failed, skipped, retry)", ["provider", "result"])
TOKEN_REFRESHES = Counter("huimin_wechat_token_refreshes", "access_token fetches from "
                          "WeChat's stable_token API", ["force"])

# The band of the FAQ match made while answering the current message, if any.
_band: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("huimin_band",
                                                                           default=None)
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("huimin_request_id",
                                                                 default="-")


# ----- counting wrappers (composition: the wrapped objects are not changed) -----------
class BandWatch:
    """A matcher that notes the band of each match for :func:`counting_replies`."""

    def __init__(self, matcher: Any) -> None:
        self._matcher = matcher

    def match(self, question: str) -> Any:
        match = self._matcher.match(question)
        seen = _band.get()
        if seen is not None:
            seen[:] = ["referred" if getattr(match, "referral", None)
                       else str(getattr(match.band, "value", match.band))]
        return match

    def __getattr__(self, name: str) -> Any:
        return getattr(self._matcher, name)


def counting_replies(reply_for: Callable[[Any], Awaitable[str | None]]
                     ) -> Callable[[Any], Awaitable[str | None]]:
    """``reply_for`` that counts each message by kind and by the band of its match."""
    async def reply(message: Any) -> str | None:
        seen: list[str] = []
        _band.set(seen)
        try:
            return await reply_for(message)
        finally:
            MESSAGES.labels(kind=str(message.type or "other")[:16],
                            band=seen[0] if seen else "none").inc()

    return reply


class CountingLedger:
    """A dedup ledger that counts the claims refused (retries of a claimed message)."""

    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger

    async def claim(self, key: str) -> bool:
        first = await self._ledger.claim(key)
        if not first:
            DEDUP_HITS.inc()
        return first

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)


# ----- /metrics -------------------------------------------------------------------
class _Fixed(Collector):
    """Metric families computed before the scrape (the outbox depth)."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        yield from self.families


def outbox_family(rows: list[tuple[str, str, int]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily("huimin_outbox_messages",
                               "Outbox messages by state and kind (read at scrape time)",
                               labels=["state", "kind"])
    for state, kind, count in rows:
        family.add_metric([state, kind], count)
    return family


def exposition(extra: list[Any] | None = None) -> tuple[bytes, str]:
    """The text exposition: every process's values (multiprocess mode) or this one's."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    if extra:
        scraped = CollectorRegistry()
        scraped.register(_Fixed(extra))
        body += generate_latest(scraped)
    return body, CONTENT_TYPE_LATEST


# ----- request ids and JSON log lines ----------------------------------------------
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_from(header: str | None) -> str:
    """The caller's X-Request-Id when it is a plain token (nginx's $request_id), else
    a new one."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return secrets.token_hex(8)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(ChinaTimeFormatter):
    """One JSON object a line: time (China time, with the offset), level, logger,
    message, request id, worker pid."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname, "logger": record.name,
                "message": record.getMessage(),
                "request_id": getattr(record, "request_id", REQUEST_ID.get()),
                "pid": record.process}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def install_log_format(log_format: str) -> None:
    """Add the request id to every record; with ``json`` (``HUIMIN_LOG_FORMAT``), one
    JSON object per line."""
    json_lines = log_format == "json"
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        if json_lines:
            handler.setFormatter(JsonFormatter())
