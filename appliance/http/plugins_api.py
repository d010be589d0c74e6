"""Plugin management over HTTP, for admins: list, upload a wheel with its sha256, enable,
disable, remove. Changes take effect at the next restart (the response says so)."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from aiohttp import web

from appliance.errors import ApplianceError, BadRequest
from appliance.http.middleware import require, track_change
from appliance.http.multipart import read_form
from appliance.keys import appliance_of
from appliance.plugin_admin import install, remove, set_enabled

routes = web.RouteTableDef()
_WHEEL_NAME = re.compile(r"^[A-Za-z0-9_.]+-[A-Za-z0-9_.+!]+(-[A-Za-z0-9_.]+){2,3}\.whl$")


@routes.post("/appliance/plugins")
async def upload(request: web.Request) -> web.Response:
    require(request, "plugins.manage")
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("send multipart/form-data with 'file' (a .whl) and 'sha256'")
    form = await read_form(request, appliance_of(request).settings.max_body_bytes, ("file",))
    sha256 = form.value("sha256").lower()
    with tempfile.TemporaryDirectory() as tmp:
        wheel: Path | None = None
        for part in form.files:
            filename = Path(part.filename).name
            if not _WHEEL_NAME.match(filename):
                raise BadRequest(f"{filename!r} is not a wheel file name", param="file")
            wheel = Path(tmp) / filename
            await asyncio.to_thread(wheel.write_bytes, part.data)
        if wheel is None:
            raise BadRequest("'file' (the wheel) is required", param="file")
        if len(sha256) != 64:
            raise BadRequest("'sha256' (64 hex characters) is required", param="sha256")
        try:
            result = await asyncio.to_thread(install, str(wheel), (), None, sha256)
        except ApplianceError as exc:
            track_change(request, "plugin.install_refused", wheel.name, reason=exc.message)
            raise
    track_change(request, "plugin.installed", wheel.name, sha256=sha256, plugins=result.new_plugins)
    return web.json_response(
        {
            "installed": wheel.name,
            "sha256": sha256,
            "plugins": result.new_plugins,
            "restart_required": True,
        },
        status=201,
    )


async def _toggle(request: web.Request, enabled: bool) -> web.Response:
    require(request, "plugins.manage")
    name = request.match_info["name"]
    await asyncio.to_thread(set_enabled, appliance_of(request).settings, name, enabled)
    track_change(request, "plugin.enabled" if enabled else "plugin.disabled", name)
    return web.json_response({"name": name, "enabled": enabled, "restart_required": True})


@routes.post("/appliance/plugins/{name}/enable")
async def enable(request: web.Request) -> web.Response:
    return await _toggle(request, True)


@routes.post("/appliance/plugins/{name}/disable")
async def disable(request: web.Request) -> web.Response:
    return await _toggle(request, False)


@routes.delete("/appliance/plugins/{name}")
async def delete(request: web.Request) -> web.Response:
    require(request, "plugins.manage")
    name = request.match_info["name"]
    dist = await asyncio.to_thread(remove, name)
    track_change(request, "plugin.removed", name, distribution=dist)
    return web.json_response({"name": name, "removed": dist, "restart_required": True})
