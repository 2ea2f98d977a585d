"""The audit log: every change made through the admin UI, every sign-in, and every view
of a beneficiary's personal data, with who, when, from where, and before/after."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.models import AuditEntry
from huimin.clock import china_midnight, utcnow

# China Standard Time (no daylight saving): how staff read and type times.

ACTIONS: dict[str, str] = {
    "login": "登录",
    "login_failed": "登录失败",
    "login_locked": "登录被暂停（反复输错密码）",
    "logout": "退出登录",
    "own_password": "修改自己的密码",
    "user_create": "新建账号",
    "user_role": "修改角色",
    "user_disable": "停用账号",
    "user_enable": "启用账号",
    "user_password": "重设密码",
    "faq_draft": "保存草稿",
    "faq_draft_discard": "放弃草稿",
    "faq_publish": "发布问答",
    "faq_revert": "恢复旧版本",
    "faq_import": "导入问答",
    "dictionary_add": "词典：新增",
    "dictionary_change": "词典：修改",
    "dictionary_remove": "词典：删除",
    "dictionary_import": "导入词典",
    "situation_add": "生活情况：新增",
    "situation_remove": "生活情况：删除",
    "content_export": "导出内容",
    "inbox_alternative": "未答问题：加为问法",
    "inbox_new_entry": "未答问题：新建条目",
    "inbox_dismiss": "未答问题：忽略",
    "personal_view": "查看个人信息",
    "registry_search": "查找救助对象",
    "registry_import": "导入申请名单",
    "registry_stage": "修改办理环节",
    "delegate_grant": "授权家人查看",
    "binding_revoke": "撤销微信绑定",
    "payout_import": "导入发放名单",
    "reminder_plan": "排队提醒",
    "reminder_retry": "重发提醒",
    "optout_add": "退订短信提醒",
    "optout_remove": "恢复提醒",
    "case_view": "查看留言",
    "case_reply": "回复留言",
    "case_resend": "重发留言回复",
    "case_phoned": "留言：已电话联系",
    "case_close": "关闭留言",
    "case_phone_view": "查看留言人的完整电话号码",
    "case_route_add": "经办分工：新增",
    "case_route_remove": "经办分工：删除",
    "askers_told": "告诉问过的群众：现在有答案了",
}

TARGETS: dict[str, str] = {
    "user": "账号",
    "faq": "问答条目",
    "dictionary": "词典",
    "situation": "生活情况",
    "content": "内容",
    "inbox": "未答问题",
    "beneficiary": "救助对象",
    "application": "申请",
    "payout": "发放名单",
    "reminder": "提醒",
    "opt_out": "退订",
    "address": "来源地址",
    "case": "留言",
    "case_route": "经办分工",
}

# Stands for a typed account name that names no account (it may be a password typed into
# the wrong field, so it is never stored).
UNKNOWN_ACCOUNT = "(未知账号)"


@dataclass(frozen=True)
class Actor:
    """Who is acting: an account (for a failed sign-in: the account whose name was typed,
    or UNKNOWN_ACCOUNT) and the address."""

    user_id: int | None
    username: str | None
    ip: str | None


def jsonable(value: Any) -> Any:
    """Dates as ISO text, tuples as lists, so before/after fit a JSON column."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def record(session: AsyncSession, actor: Actor, action: str, target_type: str | None = None,
           target_id: str | None = None, before: Any = None, after: Any = None,
           at: datetime | None = None) -> None:
    """Add one audit entry in the caller's transaction (so it commits with the change);
    ``at``: the time of the operation, when the caller has one."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    session.add(AuditEntry(
        at=at or utcnow(), user_id=actor.user_id, username=(actor.username or "")[:64] or None,
        action=action, target_type=target_type,
        target_id=None if target_id is None else str(target_id)[:100],
        before=jsonable(before), after=jsonable(after), ip=(actor.ip or "")[:64] or None))


def record_personal_view(session: AsyncSession, actor: Actor, beneficiary_id: int,
                         fields: list[str], reason: str = "") -> None:
    """For the registry pages: call whenever a page shows a beneficiary's personal data."""
    record(session, actor, "personal_view", "beneficiary", str(beneficiary_id),
           after={"fields": fields, "reason": reason})


def record_list_view(session: AsyncSession, actor: Actor, beneficiary_ids: Iterable[int],
                     fields: list[str], reason: str, shown: list[str] | None = None) -> None:
    """For a page listing many beneficiaries: one entry for the page view, naming every
    beneficiary shown (and ``shown``: the records, such as application numbers), rather
    than one entry per person. Nothing is written for a page that shows nobody."""
    people = list(dict.fromkeys(beneficiary_ids))
    if not people:
        return
    after: dict[str, Any] = {"fields": fields, "reason": reason, "beneficiaries": people}
    if shown is not None:
        after["records"] = shown
    record(session, actor, "personal_view", "beneficiary", f"{len(people)}人", after=after)


@dataclass(frozen=True)
class AuditFilter:
    username: str = ""
    action: str = ""
    date_from: date | None = None
    date_to: date | None = None


async def search(session: AsyncSession, filters: AuditFilter, page: int,
                 per_page: int = 50) -> tuple[list[AuditEntry], int]:
    """One page of entries, newest first, and the number of matching entries."""
    query = select(AuditEntry)
    if filters.username:
        query = query.where(AuditEntry.username == filters.username)
    if filters.action:
        query = query.where(AuditEntry.action == filters.action)
    if filters.date_from:
        query = query.where(AuditEntry.at >= china_midnight(filters.date_from))
    if filters.date_to:
        query = query.where(AuditEntry.at < china_midnight(filters.date_to + timedelta(days=1)))
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = (await session.scalars(
        query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .offset((page - 1) * per_page).limit(per_page))).all()
    return list(rows), total


async def usernames(session: AsyncSession) -> list[str]:
    rows = await session.scalars(select(AuditEntry.username).where(
        AuditEntry.username.is_not(None)).distinct().order_by(AuditEntry.username))
    return [r for r in rows.all() if r]


@dataclass(frozen=True)
class FailedLogins:
    """Failed sign-ins to one account since some time: how many, from how many
    addresses, the latest."""

    username: str
    failures: int
    addresses: int
    last_at: datetime


async def failed_logins(session: AsyncSession, since: datetime, at_least: int = 1
                        ) -> list[FailedLogins]:
    """Accounts with at least ``at_least`` failed sign-ins since ``since``, most first
    (names that are no account are left out: they are all UNKNOWN_ACCOUNT)."""
    count = func.count(AuditEntry.id)
    rows = (await session.execute(
        select(AuditEntry.username, count, func.count(AuditEntry.ip.distinct()),
               func.max(AuditEntry.at))
        .where(AuditEntry.action == "login_failed", AuditEntry.at >= since,
               AuditEntry.username.is_not(None), AuditEntry.username != UNKNOWN_ACCOUNT)
        .group_by(AuditEntry.username).having(count >= at_least)
        .order_by(count.desc(), AuditEntry.username))).all()
    return [FailedLogins(name, failures, addresses, last)
            for name, failures, addresses, last in rows]
