"""The application factory."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from appliance.auth import active_token_count, create_token
from appliance.core import Appliance, Event
from appliance.errors import SettingsError
from appliance.hookcall import describe
from appliance.http import (
    admin,
    audio,
    conversations,
    models_api,
    moderations,
    ollama,
    openai,
    plugins_api,
    responses,
)
from appliance.http.cors import add_cors_headers, cors_middleware
from appliance.http.middleware import auth_middleware, errors_middleware
from appliance.jobs import JobRunner
from appliance.keys import APPLIANCE
from appliance.plugin_admin import load_for
from appliance.plugins import Plugins
from appliance.settings import Settings

log = logging.getLogger(__name__)
FIRST_TOKEN_FILE = "first-admin-token"


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
        middlewares=[cors_middleware, errors_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app.on_response_prepare.append(add_cors_headers)
    app[APPLIANCE] = appliance
    app.add_routes(admin.routes)
    app.add_routes(openai.routes)
    app.add_routes(ollama.routes)
    app.add_routes(plugins_api.routes)
    app.add_routes(audio.routes)
    app.add_routes(conversations.routes)
    app.add_routes(responses.routes)
    app.add_routes(models_api.routes)
    app.add_routes(moderations.routes)
    _mount_plugin_routes(app, appliance)
    app.cleanup_ctx.append(_core_lifespan)
    app.cleanup_ctx.append(_plugin_lifespans)
    return app


RESERVED_PREFIXES = frozenset({"v1", "api", "appliance", "plugins", "metrics", ".well-known"})


def _route_prefix(appliance: Appliance, name: str) -> str:
    """``/plugins/<name>``, or ``/appliance/<name>`` or ``/<name>`` for a plugin that asks for it
    (its own namespace, never a core path; the web page is ``/ui``)."""
    plugin = appliance.plugins.pm.get_plugin(name)
    wanted = getattr(plugin, "ROUTE_PREFIX", None)
    if wanted == f"/appliance/{name}" or (wanted == f"/{name}" and name not in RESERVED_PREFIXES):
        return str(wanted)
    return f"/plugins/{name}"


def _route_defs(answer: Any) -> list[web.AbstractRouteDef]:
    """What a plugin returned, flattened: RouteDefs, StaticDefs, RouteTableDefs, lists of them."""
    if isinstance(answer, web.AbstractRouteDef):
        return [answer]
    if isinstance(answer, (str, bytes)) or not isinstance(answer, Iterable):
        raise TypeError(f"register_routes returned {answer!r}, not aiohttp route definitions")
    found: list[web.AbstractRouteDef] = []
    for item in answer:
        found.extend(_route_defs(item))
    return found


def _to_folder(prefix: str) -> Any:
    async def redirect(request: web.Request) -> web.StreamResponse:
        query = f"?{request.query_string}" if request.query_string else ""
        raise web.HTTPTemporaryRedirect(f"{prefix}/{query}")

    return redirect


def _public_paths(appliance: Appliance, name: str, prefix: str) -> set[str]:
    """A plugin's ``PUBLIC_PATHS`` (under its prefix; a trailing ``*`` for a whole folder):
    reachable without a token, such as a sign-in page."""
    plugin = appliance.plugins.pm.get_plugin(name)
    paths = {prefix + str(p) for p in getattr(plugin, "PUBLIC_PATHS", ())}
    if prefix + "/" in paths:
        paths.add(prefix)  # the redirect to a public folder is public too
    return paths


def _mount_plugin_routes(app: web.Application, appliance: Appliance) -> None:
    """Each plugin's routes become its own sub-app under its prefix, registered by aiohttp
    itself; whatever goes wrong is that plugin's load error, and the box goes on."""
    for answer in appliance.plugins.call(
        "register_routes", on_error="unregister", appliance=appliance
    ):
        name = answer.plugin
        prefix = _route_prefix(appliance, name)
        try:
            if isinstance(answer.value, web.Application):
                sub = answer.value  # a plugin's own sub-app (its middlewares, its signals)
            else:
                sub = web.Application()
                sub.router.add_routes(_route_defs(answer.value))
            if any(
                r.resource is not None and r.resource.canonical == "/" for r in sub.router.routes()
            ):
                # /ui -> /ui/ (registered first: the sub-app would claim its bare prefix)
                app.router.add_get(prefix, _to_folder(prefix))
            app.add_subapp(prefix, sub)
            appliance.public_paths.update(_public_paths(appliance, name, prefix))
        except Exception as exc:
            appliance.plugins.fail(name, f"register_routes failed: {describe(exc)}")
            continue
        record = appliance.plugins.records.get(name)
        if record is not None:
            record.routes = [
                f"{route.method} {route.resource.canonical}"
                for route in sub.router.routes()
                if route.resource is not None and route.method != "HEAD"
            ]


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


def hand_over_first_token(appliance: Appliance, token: str) -> None:
    """Give IT the first admin token without it reaching the service journal: a file only the
    box's user can read (read it once, then delete it), and the terminal when one is attached."""
    path = appliance.settings.home / FIRST_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    log.warning(
        "first start: an admin token was created and written to %s (readable by this user "
        "only); read it, keep it safe, and delete the file",
        path,
    )
    if sys.stdout.isatty():
        banner = "=" * 72
        print(
            f"{banner}\nFirst start: an admin token was created. It is shown only this once:\n"
            f"\n    {token}\n\nKeep it safe; create user tokens with it.\n{banner}",
            flush=True,
        )


async def _core_lifespan(app: web.Application) -> AsyncIterator[None]:
    appliance = app[APPLIANCE]
    appliance.open()
    appliance.jobs = JobRunner(appliance)
    try:
        token = ensure_admin_token(appliance)
        if token is not None:
            hand_over_first_token(appliance, token)
        elif await appliance.is_open():
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
        await appliance.zeroconf.close()
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
        for answer in appliance.plugins.call(
            "lifespan", on_error="unregister", appliance=appliance
        ):
            try:
                await stack.enter_async_context(answer.value)
            except Exception as exc:
                appliance.plugins.fail(answer.plugin, f"lifespan failed to start: {describe(exc)}")
        yield
