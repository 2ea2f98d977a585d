"""The audit log page (管理员 only): filter by person, action and dates; 50 a page."""

from __future__ import annotations

import json
from datetime import date
from math import ceil

from aiohttp import web

from admin.audit import ACTIONS, AuditFilter, search, usernames
from admin.web import page_number, render, state

PER_PAGE = 50


def _date(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw.strip()) if raw.strip() else None
    except ValueError:
        return None


def _pretty(value: object) -> str:
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=False)


async def audit_page(request: web.Request) -> web.Response:
    q = request.query
    filters = AuditFilter(
        username=q.get("user", "").strip()[:64],
        action=q.get("action", "") if q.get("action", "") in ACTIONS else "",
        date_from=_date(q.get("from", "")),
        date_to=_date(q.get("to", "")),
    )
    page = page_number(request)
    async with state(request).db.session() as session:
        rows, total = await search(session, filters, page, PER_PAGE)
        people = await usernames(session)
    pages = max(1, ceil(total / PER_PAGE))
    query = {"user": filters.username, "action": filters.action,
             "from": filters.date_from.isoformat() if filters.date_from else "",
             "to": filters.date_to.isoformat() if filters.date_to else ""}
    return await render(request, "audit.html", rows=rows, total=total, page=page,
                        pages=pages, filters=filters, people=people, query=query,
                        pretty=_pretty)
