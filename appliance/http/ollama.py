"""The Ollama-compatible API under /api."""

from __future__ import annotations

from aiohttp import web

from appliance.keys import appliance_of

routes = web.RouteTableDef()


@routes.get("/api/version")
async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": appliance_of(request).version})
