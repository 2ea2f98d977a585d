"""Answers and details are plain text with a fixed set of placeholders for the county's
values (``{{ county.hotline }}`` …), filled in by :func:`fill`.

Bureau staff edit answers, so an answer is data, never a template: nothing in it is
evaluated. :func:`fill` replaces exactly the placeholders below, in one pass (a value
that itself contains ``{{`` stays as written) and leaves everything else as it is.
:func:`bad_placeholders` is the rule the publish check and ``huimin content check``
apply: any ``{{``, ``{%`` or ``{#`` that does not start an allowed placeholder is
refused. For the placeholders below, :func:`fill` gives exactly what the jinja2
rendering used before gave (``tests/content/test_placeholders.py`` compares them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The county values an answer may name (content/county.yaml), with what each is, in the
# editors' words. Order: as the admin form lists them.
PLACEHOLDERS: dict[str, str] = {
    "hotline": "咨询电话",
    "bureau_name": "单位名称",
    "county_name": "县名",
    "address": "办公地址",
    "office_hours": "办公时间",
    "payout_day": "每月发放日",
    "sms_signature": "短信签名",
}

_PLACEHOLDER = re.compile(r"\{\{\s*county\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_OPENER = re.compile(r"\{[{%#]")
_CLOSER = {"{{": "}}", "{%": "%}", "{#": "#}"}
_SHOWN = 80


def placeholder(name: str) -> str:
    """How a placeholder is written in an answer: ``{{ county.hotline }}``."""
    return "{{ county." + name + " }}"


def allowed_list() -> str:
    """Every allowed placeholder, for messages: ``{{ county.hotline }}, …``."""
    return ", ".join(placeholder(name) for name in PLACEHOLDERS)


def fill(text: str, county: Mapping[str, Any]) -> str:
    """The answer as a user sees it: each allowed placeholder replaced by the county's
    value, anything else left exactly as written; surrounding blank space removed."""

    def value(found: re.Match[str]) -> str:
        name = found.group(1)
        if name in PLACEHOLDERS and name in county:
            return str(county[name])
        return found.group(0)

    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _PLACEHOLDER.sub(value, text).strip()


def _construct(text: str, start: int) -> str:
    """The construct starting at ``start`` as written (up to its closer), shortened."""
    closer = _CLOSER[text[start:start + 2]]
    end = text.find(closer, start + 2)
    shown = text[start:end + 2] if end >= 0 else text[start:]
    shown = " ".join(shown.split())
    return shown if len(shown) <= _SHOWN else shown[:_SHOWN - 1] + "…"


def bad_placeholders(text: str, county: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """What in ``text`` cannot be filled in: (constructs that are not an allowed
    placeholder, as written; allowed placeholders the county file has no value for)."""
    refused: list[str] = []
    missing: list[str] = []
    position = 0
    while (opener := _OPENER.search(text, position)) is not None:
        start = opener.start()
        found = _PLACEHOLDER.match(text, start)
        if found is not None and found.group(1) in PLACEHOLDERS:
            if found.group(1) not in county and found.group(1) not in missing:
                missing.append(found.group(1))
            position = found.end()
            continue
        shown = _construct(text, start)
        if shown not in refused:
            refused.append(shown)
        position = start + 2
    return refused, missing
