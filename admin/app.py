"""Build the admin UI's aiohttp application.

Routes are relative, so the same app works on its own (``huimin admin serve``, which
mounts it at /admin) and as a sub-app of the bot's application::

    app.add_subapp("/admin", create_admin_app(settings, backing))

The database (and WeChat's shared access token) come from the composition root
(:mod:`huimin.wiring.apps`), which opens and closes them; in the demo the bot and the
staff UI share one database engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from admin.accounts import LOGIN_POLICY, LoginGuard, LoginPolicy
from admin.jobs import RUNNER as IMPORT_RUNNER
from admin.jobs import ImportRunner
from admin.roles import AUDIT, CASES, CONTENT, INBOX, REGISTRY, SIGNED_IN, USERS
from admin.tryout import TryOut
from admin.uploads import UploadStore
from admin.views import (
    audit_log,
    auth,
    cases,
    dictionary,
    faq,
    home,
    inbox,
    payouts,
    registry,
    reminders,
    situations,
    transfer,
    users,
)
from admin.web import STATE, AdminState, access, errors, security_headers
from content.guide import Guide
from content.load import load_county
from huimin.clock import utcnow
from huimin.db import Database
from huimin.settings import Settings, admin_forwarded_hops
from notify.wechat import AccessTokenStore

STATIC_DIR = Path(__file__).resolve().parent / "static"
PUBLIC = None  # no sign-in needed


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Any]
    name: str
    capability: str | None


async def _to_home(request: web.Request) -> web.Response:
    raise web.HTTPFound(str(request.app.router["home"].url_for()))


ROUTES: tuple[Route, ...] = (
    Route("GET", "", _to_home, "root", PUBLIC),
    Route("GET", "/login", auth.login_page, "login", PUBLIC),
    Route("POST", "/login", auth.login, "login_post", PUBLIC),
    Route("POST", "/logout", auth.logout, "logout", SIGNED_IN),
    Route("GET", "/", home.home, "home", SIGNED_IN),
    Route("GET", "/account", auth.account_page, "account", SIGNED_IN),
    Route("POST", "/account/password", auth.change_own_password, "account_password",
          SIGNED_IN),
    # content
    Route("GET", "/faq", faq.faq_list, "faq_list", CONTENT),
    Route("GET", "/faq/new", faq.faq_new, "faq_new", CONTENT),
    Route("POST", "/faq/new", faq.faq_create, "faq_create", CONTENT),
    Route("GET", "/faq/{entry_id}", faq.faq_edit, "faq_edit", CONTENT),
    Route("POST", "/faq/{entry_id}", faq.faq_save, "faq_save", CONTENT),
    Route("POST", "/faq/{entry_id}/discard", faq.faq_discard, "faq_discard", CONTENT),
    Route("GET", "/faq/{entry_id}/history", faq.faq_history, "faq_history", CONTENT),
    Route("POST", "/faq/{entry_id}/revert", faq.faq_revert, "faq_revert", CONTENT),
    Route("GET", "/try", faq.try_page, "try_out", CONTENT),
    Route("GET", "/dictionary", dictionary.dictionary_page, "dictionary", CONTENT),
    Route("POST", "/dictionary/add", dictionary.dictionary_add, "dictionary_add", CONTENT),
    Route("POST", "/dictionary/change", dictionary.dictionary_change, "dictionary_change",
          CONTENT),
    Route("POST", "/dictionary/remove", dictionary.dictionary_remove, "dictionary_remove",
          CONTENT),
    Route("GET", "/situations", situations.situations_page, "situations", CONTENT),
    Route("POST", "/situations/add", situations.situation_add, "situation_add", CONTENT),
    Route("POST", "/situations/remove", situations.situation_remove, "situation_remove",
          CONTENT),
    Route("GET", "/import", transfer.import_page, "transfer", CONTENT),
    Route("POST", "/import", transfer.import_preview, "import_preview", CONTENT),
    Route("POST", "/import/publish", transfer.import_publish, "import_publish", CONTENT),
    Route("GET", "/export", transfer.export, "export", CONTENT),
    # unanswered questions
    Route("GET", "/inbox", inbox.inbox_page, "inbox", INBOX),
    Route("POST", "/inbox/alternative", inbox.add_alternative, "inbox_alternative", INBOX),
    Route("POST", "/inbox/dismiss", inbox.dismiss, "inbox_dismiss", INBOX),
    # beneficiaries and applications
    Route("GET", "/registry", registry.registry_list, "registry", REGISTRY),
    Route("POST", "/registry", registry.registry_search, "registry_search", REGISTRY),
    Route("GET", "/registry/import", registry.import_page, "registry_import", REGISTRY),
    Route("POST", "/registry/import", registry.import_preview, "registry_preview", REGISTRY),
    Route("POST", "/registry/import/confirm", registry.import_confirm, "registry_confirm",
          REGISTRY),
    Route("POST", "/registry/import/cancel", registry.import_cancel, "registry_cancel",
          REGISTRY),
    Route("GET", "/imports/{job_id}", registry.job_page, "import_job", REGISTRY),
    Route("POST", "/imports/{job_id}/restart", registry.job_restart, "import_job_restart",
          REGISTRY),
    Route("GET", "/registry/applications/{app_id}", registry.application_page, "application",
          REGISTRY),
    Route("POST", "/registry/applications/{app_id}/stage", registry.change_stage,
          "application_stage", REGISTRY),
    Route("POST", "/registry/applications/{app_id}/delegate", registry.grant_delegate,
          "application_delegate", REGISTRY),
    Route("POST", "/registry/applications/{app_id}/revoke", registry.revoke_binding,
          "application_revoke", REGISTRY),
    # payouts
    Route("GET", "/payouts", payouts.payouts_page, "payouts", REGISTRY),
    Route("POST", "/payouts/import", payouts.import_preview, "payouts_preview", REGISTRY),
    Route("POST", "/payouts/import/confirm", payouts.import_confirm, "payouts_confirm",
          REGISTRY),
    Route("POST", "/payouts/import/cancel", payouts.import_cancel, "payouts_cancel",
          REGISTRY),
    Route("POST", "/payouts/plan", payouts.plan_reminders, "payouts_plan", REGISTRY),
    Route("GET", "/payouts/{month}", payouts.month_page, "payouts_month", REGISTRY),
    # reminders
    Route("GET", "/reminders", reminders.reminders_page, "reminders", REGISTRY),
    Route("GET", "/reminders/failed", reminders.failed_page, "reminders_failed", REGISTRY),
    Route("POST", "/reminders/retry", reminders.retry_one, "reminders_retry", REGISTRY),
    Route("POST", "/reminders/retry-reason", reminders.retry_reason, "reminders_retry_reason",
          REGISTRY),
    Route("GET", "/reminders/optouts", reminders.optouts, "optouts", REGISTRY),
    Route("POST", "/reminders/optouts/add", reminders.optout_add, "optout_add", REGISTRY),
    Route("POST", "/reminders/optouts/remove", reminders.optout_remove, "optout_remove",
          REGISTRY),
    # messages left for caseworkers (经办留言) and who gets which (经办分工)
    Route("GET", "/cases", cases.cases_page, "cases", CASES),
    Route("GET", "/cases/routes", cases.routes_page, "case_routes", USERS),
    Route("POST", "/cases/routes/add", cases.route_add, "case_route_add", USERS),
    Route("POST", "/cases/routes/remove", cases.route_remove, "case_route_remove", USERS),
    Route("GET", "/cases/{case_id}", cases.case_page, "case", CASES),
    Route("POST", "/cases/{case_id}/reply", cases.reply, "case_reply", CASES),
    Route("POST", "/cases/{case_id}/resend", cases.resend, "case_resend", CASES),
    Route("POST", "/cases/{case_id}/phoned", cases.phoned, "case_phoned", CASES),
    Route("POST", "/cases/{case_id}/close", cases.close, "case_close", CASES),
    Route("POST", "/cases/{case_id}/phone", cases.show_phone, "case_phone", CASES),
    # accounts and audit
    Route("GET", "/users", users.users_page, "users", USERS),
    Route("POST", "/users", users.create, "users_create", USERS),
    Route("POST", "/users/{user_id}/role", users.change_role, "users_role", USERS),
    Route("POST", "/users/{user_id}/status", users.change_status, "users_status", USERS),
    Route("POST", "/users/{user_id}/password", users.reset_password, "users_password",
          USERS),
    Route("GET", "/audit", audit_log.audit_page, "audit", AUDIT),
)


class Backing(Protocol):
    """What the composition root (:class:`huimin.wiring.resources.Backing`) hands the
    staff UI: the database, and WeChat's access token shared with every process (None
    without an AppID), kept in Redis or the database as the root chose."""

    db: Database

    def token_store(self) -> AccessTokenStore | None: ...


def create_admin_app(settings: Settings, backing: Backing,
                     clock: Callable[[], datetime] = utcnow,
                     login_policy: LoginPolicy = LOGIN_POLICY) -> web.Application:
    """The staff web UI; mount it at /admin (see ``admin.serve`` for running it alone).

    ``clock`` gives the time that sessions and sign-in throttling go by (read once per
    request); tests pass one they move, and a ``login_policy`` with smaller numbers."""
    app = web.Application(middlewares=[errors, access])
    guide = Guide.load()
    county = load_county(settings.county_file)
    state = AdminState(settings=settings, db=backing.db,
                       guard=LoginGuard(backing.db, login_policy), tokens=backing.token_store(),
                       tryout=TryOut(guide, county), county=county,
                       uploads=UploadStore(settings.admin_upload_dir),
                       clock=clock, forwarded_hops=admin_forwarded_hops(settings))
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler, name=route.name)
        state.capabilities[route.name] = route.capability
    app.router.add_static("/static", STATIC_DIR, name="static")
    state.capabilities["static"] = PUBLIC
    app[STATE] = state
    # Confirmed list imports run in the background; stopped (and marked interrupted)
    # before the database engine is closed.
    runner = ImportRunner(lambda: state.db, lambda: state.vault, state.uploads)
    app[IMPORT_RUNNER] = runner
    app.cleanup_ctx.append(runner.lifetime)
    app.on_response_prepare.append(security_headers)
    return app
