"""CORS for browser-based clients, as Ollama's ``OLLAMA_ORIGINS`` works: the ``cors_origins``
setting lists the origins whose pages may call the API (``*`` as a port or subdomain wildcard,
or ``*`` alone for any). Preflight ``OPTIONS`` requests are answered here; every response to an
allowed origin (streams and errors included) carries the ``Access-Control-*`` headers.
Credentials are allowed only for an origin named exactly, never through a wildcard.
"""

from __future__ import annotations

import fnmatch

from aiohttp import web

from appliance.http.middleware import Handler
from appliance.keys import appliance_of

CORS_PATHS = ("/v1/", "/api/", "/appliance/")
METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
DEFAULT_HEADERS = "Authorization, Content-Type, X-Request-Id"
EXPOSED = "X-Request-Id, X-Conversation-Id, Retry-After"


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> tuple[bool, bool]:
    """(whether ``origin`` may call the API, whether with credentials)."""
    if not origin:
        return False, False
    if origin in allowed:
        return True, True
    return any(p == "*" or ("*" in p and fnmatch.fnmatchcase(origin, p)) for p in allowed), False


def _applies(request: web.Request) -> bool:
    return request.path.startswith(CORS_PATHS)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return await handler(request)
    if not _applies(request):
        return await handler(request)
    origin = request.headers.get("Origin", "")
    allowed, _ = origin_allowed(origin, appliance_of(request).settings.cors_origins)
    if not allowed:
        return web.json_response(
            {
                "error": f"origin {origin!r} may not call this box; IT lists allowed origins in "
                "the cors_origins setting"
            },
            status=403,
        )
    requested = request.headers.get("Access-Control-Request-Headers", "")
    response = web.Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = METHODS
    response.headers["Access-Control-Allow-Headers"] = requested or DEFAULT_HEADERS
    response.headers["Access-Control-Max-Age"] = "600"
    return response


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: runs before any response's headers are sent."""
    if not _applies(request):
        return
    origin = request.headers.get("Origin", "")
    allowed, credentials = origin_allowed(origin, appliance_of(request).settings.cors_origins)
    response.headers.add("Vary", "Origin")
    if not allowed:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSED
    if credentials:
        response.headers["Access-Control-Allow-Credentials"] = "true"
