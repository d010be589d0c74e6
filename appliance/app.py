"""The application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack

from aiohttp import web

from appliance.auth import active_token_count, create_token
from appliance.core import Appliance, Event
from appliance.errors import SettingsError
from appliance.http import admin, audio, conversations, ollama, openai, plugins_api
from appliance.http.middleware import auth_middleware, errors_middleware
from appliance.jobs import JobRunner
from appliance.keys import APPLIANCE
from appliance.plugin_admin import load_for
from appliance.plugins import Plugins
from appliance.settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    plugins: Plugins | None = None,
    extra_plugins: Iterable[tuple[str, object]] = (),
) -> web.Application:
    """Build the aiohttp application. The database opens and closes with the app (cleanup_ctx)."""
    plugins = plugins or load_for(settings, extra_plugins)
    appliance = Appliance(settings, plugins)
    appliance.detect()
    appliance.register_models()
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware], client_max_size=settings.max_body_bytes
    )
    app[APPLIANCE] = appliance
    app.add_routes(admin.routes)
    app.add_routes(openai.routes)
    app.add_routes(ollama.routes)
    app.add_routes(plugins_api.routes)
    app.add_routes(audio.routes)
    app.add_routes(conversations.routes)
    _mount_plugin_routes(app, appliance)
    app.cleanup_ctx.append(_core_lifespan)
    app.cleanup_ctx.append(_plugin_lifespans)
    return app


def _route_prefix(appliance: Appliance, name: str) -> str:
    """``/plugins/<name>``, or ``/appliance/<name>`` for a plugin that asks for it (its own
    namespace under the appliance API, never a core path)."""
    plugin = appliance.plugins.pm.get_plugin(name)
    wanted = getattr(plugin, "ROUTE_PREFIX", None)
    return f"/appliance/{name}" if wanted == f"/appliance/{name}" else f"/plugins/{name}"


def _mount_plugin_routes(app: web.Application, appliance: Appliance) -> None:
    for name, route_defs in appliance.plugins.call_each("register_routes", appliance=appliance):
        prefix = _route_prefix(appliance, name)
        for route in route_defs:
            if not isinstance(route, web.RouteDef):
                appliance.plugins.fail(name, f"register_routes returned {route!r}, not a RouteDef")
                break
            path = route.path if route.path.startswith("/") else "/" + route.path
            app.router.add_route(route.method, f"{prefix}{path}", route.handler, **route.kwargs)
            record = appliance.plugins.records.get(name)
            if record is not None:
                record.routes.append(f"{route.method} {prefix}{path}")


def ensure_admin_token(appliance: Appliance) -> str | None:
    """On a LAN-facing box with no admin token, create one (returned once) or refuse to start."""
    settings = appliance.settings
    if settings.is_loopback:
        return None
    admins = appliance.db.read_sync(lambda db: active_token_count(db, "admin"))
    if admins:
        return None
    if not settings.generate_admin_token:
        raise SettingsError(
            f"refusing to serve on {settings.host}: no admin token exists. Create one with "
            "`appliance tokens create --role admin` or provision one"
        )
    token, _ = appliance.db.write_sync(
        lambda db: create_token(db, "admin", "first-start admin", created_by="first-start")
    )
    return token


async def _core_lifespan(app: web.Application) -> AsyncIterator[None]:
    appliance = app[APPLIANCE]
    appliance.open()
    appliance.jobs = JobRunner(appliance)
    try:
        token = ensure_admin_token(appliance)
        if token is not None:
            banner = "=" * 72
            print(
                f"{banner}\nFirst start: an admin token was created. It is shown only this once:\n"
                f"\n    {token}\n\nKeep it safe; create user tokens with it.\n{banner}",
                flush=True,
            )
        elif appliance.settings.is_loopback:
            has_tokens = appliance.db.read_sync(lambda db: active_token_count(db) > 0)
            if not has_tokens:
                log.warning(
                    "no tokens exist and the box listens on loopback only: running OPEN "
                    "(anyone on this machine is admin). Create a token to require auth."
                )
        default = appliance.default_chat_model()
        if appliance.settings.load_at_start and default:
            await appliance.scheduler.load(appliance.registry.chat.get(default).backend)
        appliance.track(Event("appliance.started", detail={"version": appliance.version}))
        if appliance.settings.calibrate_at_start and appliance.calibration is None:
            appliance.spawn(_first_calibration(appliance))
        await appliance.jobs.start()
        retention = asyncio.create_task(_retention_daily(appliance))
        yield
        retention.cancel()
    finally:
        await appliance.jobs.stop()
        await appliance.drain()
        appliance.close()


async def _retention_daily(appliance: Appliance) -> None:
    while True:
        try:
            await appliance.enforce_retention()
        except Exception:
            log.exception("history retention failed")
        await asyncio.sleep(86400)


async def _first_calibration(appliance: Appliance) -> None:
    try:
        await appliance.calibrate()
    except Exception:
        log.exception("first-start calibration failed; the estimates stay in use")


async def _plugin_lifespans(app: web.Application) -> AsyncIterator[None]:
    appliance = app[APPLIANCE]
    async with AsyncExitStack() as stack:
        for name, manager in appliance.plugins.call_each("lifespan", appliance=appliance):
            try:
                await stack.enter_async_context(manager)
            except Exception as exc:
                appliance.plugins.fail(name, f"lifespan failed to start: {exc}")
        yield
