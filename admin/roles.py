"""Roles, what each may do, and the navigation built from that.

Every route names one capability (see ``admin.app.ROUTES``); a role either has it or
gets the 403 page.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES: dict[str, str] = {
    "admin": "管理员",
    "editor": "内容编辑",
    "caseworker": "经办人员",
}

# Capabilities. "signed_in": any active account (home page, own password).
SIGNED_IN = "signed_in"
CONTENT = "content"  # FAQ, dictionary, try-out, import/export
INBOX = "inbox"  # unanswered questions
REGISTRY = "registry"  # beneficiaries, applications, payouts, reminders
USERS = "users"  # staff accounts
AUDIT = "audit"  # the audit log
CASES = "cases"  # messages people left for a caseworker (only those routed to them)

CAPABILITIES: dict[str, frozenset[str]] = {
    "admin": frozenset({SIGNED_IN, CONTENT, INBOX, REGISTRY, USERS, AUDIT, CASES}),
    "editor": frozenset({SIGNED_IN, CONTENT, INBOX}),
    "caseworker": frozenset({SIGNED_IN, REGISTRY, CASES}),
}


def role_from_text(text: str) -> str | None:
    """'editor' or '内容编辑' -> 'editor'; None when it is neither a role nor its label."""
    value = text.strip()
    if value in ROLES:
        return value
    for role, label in ROLES.items():
        if value == label:
            return role
    return None


def can(role: str, capability: str) -> bool:
    return capability in CAPABILITIES.get(role, frozenset())


@dataclass(frozen=True)
class NavItem:
    label: str
    capability: str
    route: str | None  # None: a page that is not built yet (shown greyed out)
    also: tuple[str, ...] = ()  # other routes of the same part (the item is marked)

    def current(self, route_name: str | None) -> bool:
        return route_name is not None and (route_name == self.route
                                           or route_name in self.also)


NAVIGATION: tuple[NavItem, ...] = (
    NavItem("首页", SIGNED_IN, "home"),
    NavItem("问答内容", CONTENT, "faq_list"),
    NavItem("未答问题", INBOX, "inbox"),
    NavItem("方言词典", CONTENT, "dictionary"),
    NavItem("生活情况", CONTENT, "situations"),
    NavItem("试一试", CONTENT, "try_out"),
    NavItem("导入导出", CONTENT, "transfer"),
    NavItem("救助对象", REGISTRY, "registry",
            ("registry_import", "registry_preview", "registry_confirm", "application",
             "application_stage", "application_delegate")),
    NavItem("发放记录", REGISTRY, "payouts",
            ("payouts_preview", "payouts_confirm", "payouts_month")),
    NavItem("提醒", REGISTRY, "reminders", ("reminders_failed", "optouts", "optout_add")),
    NavItem("经办留言", CASES, "cases", ("case", "case_phone")),
    NavItem("经办分工", USERS, "case_routes"),
    NavItem("账号管理", USERS, "users"),
    NavItem("操作记录", AUDIT, "audit"),
)


def navigation(role: str) -> list[NavItem]:
    return [item for item in NAVIGATION if can(role, item.capability)]
