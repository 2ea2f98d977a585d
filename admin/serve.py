"""Run the admin UI as its own process (``huimin admin serve``), mounted at /admin."""

from __future__ import annotations

from aiohttp import web

from admin.web import MAX_BODY
from huimin.settings import Settings, SettingsError

MOUNT = "/admin"


def build_server_app(admin_app: web.Application) -> web.Application:
    """A root application with the admin UI (from :func:`admin.app.create_admin_app`)
    at /admin and / sending there."""
    root = web.Application(client_max_size=MAX_BODY)

    async def to_admin(request: web.Request) -> web.Response:
        raise web.HTTPFound(MOUNT + "/")

    root.router.add_get("/", to_admin)
    root.add_subapp(MOUNT, admin_app)
    return root


def run_admin(settings: Settings, admin_app: web.Application, host: str | None = None,
              port: int | None = None) -> None:
    """Serve until interrupted; a busy port is reported as a SettingsError."""
    host = host or settings.host
    port = port or settings.port
    app = build_server_app(admin_app)

    async def announce(_app: web.Application) -> None:
        print(f"Huimin admin listening on http://{host}:{port}{MOUNT}/", flush=True)

    app.on_startup.append(announce)
    try:
        web.run_app(app, host=host, port=port, print=None, access_log=None)
    except OSError as exc:
        raise SettingsError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                            "(set HUIMIN_PORT or --port)") from None
