"""The box's own web page, at ``/ui/``: IT manages the box and staff chat, from a browser.

A bundled plugin registered like any third party's: a migration (sessions), routes (the page,
its files, sign-in), an ``actor_from_request`` that turns the session cookie into the token it
stands for, and nothing else. The page is plain HTML, CSS and JavaScript served by the box (no
CDN, font or script from outside), under a strict Content-Security-Policy; it calls the same API
as every other client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from appliance import (
    Actor,
    Appliance,
    BadRequest,
    Migration,
    TokenLimits,
    Unauthorized,
    actor_of,
    appliance_of,
    hookimpl,
    read_json,
)
from appliance_web.sessions import (
    COOKIE,
    LIFETIME_S,
    create_sessions,
    csrf_ok,
    end_session,
    find_session,
    open_session,
)

NAME = "ui"
ROUTE_PREFIX = "/ui"
PUBLIC_PATHS = ("/", "/session", "/static/*")  # the page and signing in need no token yet
STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; media-src 'self' blob:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@hookimpl
def register_migrations(register: Callable[[str, Migration], None]) -> None:
    register(NAME, create_sessions)


@hookimpl
async def actor_from_request(appliance: Appliance, request: web.Request) -> Actor | None:
    """The session cookie stands for its token; a request that changes something must also
    carry the session's CSRF secret. A bearer token, when sent, is left to token auth."""
    session_id = request.cookies.get(COOKIE)
    if not session_id or "Authorization" in request.headers:
        return None
    session = await appliance.db.read(lambda db: find_session(db, session_id))
    if session is None:
        return None
    if not csrf_ok(request.method, session["csrf"], request.headers.get("X-CSRF-Token")):
        return None
    # The session's row carries its (live) token's: no second look-up.
    return Actor(
        id=session["id"],
        name=session["name"],
        role=session["role"],
        via="session",
        limits=TokenLimits.from_row(session),
    )


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.update(SECURITY_HEADERS)
    return response


async def page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Content-Type": "text/html"})


def _secure(request: web.Request) -> bool:
    return request.secure or appliance_of(request).settings.tls_cert is not None


async def sign_in(request: web.Request) -> web.Response:
    appliance = appliance_of(request)
    address = request.remote or ""
    appliance.auth_brake.check(address)
    token = (await read_json(request)).get("token")
    if not isinstance(token, str) or not token.strip():
        raise BadRequest("send {'token': 'apl_...'}", param="token")
    actor = await appliance.actor_for_token(token.strip())
    if actor is None:
        appliance.auth_brake.failed(address)
        raise Unauthorized(
            "that token is not valid, has expired or was revoked", code="invalid_api_key"
        )
    session = await appliance.db.write(lambda db: open_session(db, actor.id))
    response = web.json_response(_who(actor, session.csrf, _features(request)))
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=LIFETIME_S,
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
        path="/",
    )
    return response


async def whoami(request: web.Request) -> web.Response:
    """Who the session is (``signed_in: false`` without one: the page asks before signing in)."""
    actor = actor_of(request)
    session_id = request.cookies.get(COOKIE, "")
    appliance = appliance_of(request)
    session = await appliance.db.read(lambda db: find_session(db, session_id))
    if actor is None or session is None:
        return web.json_response({"signed_in": False})
    return web.json_response(_who(actor, session["csrf"], _features(request)))


def _features(request: web.Request) -> dict[str, bool]:
    """What this box offers, so the page does not ask for what is not there."""
    root = request.match_info.apps[0]
    prefixes = {r.canonical for r in root.router.resources()}
    registry = appliance_of(request).registry
    return {
        "rag": any(p.startswith("/appliance/rag") for p in prefixes),
        "transcription": bool(registry.transcribers.names()),
    }


async def sign_out(request: web.Request) -> web.Response:
    session_id = request.cookies.get(COOKIE)
    if session_id and actor_of(request) is not None:
        await appliance_of(request).db.write(lambda db: end_session(db, session_id))
    response = web.json_response({"signed_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


def _who(actor: Actor, csrf: str, features: dict[str, bool]) -> dict[str, Any]:
    return {
        "signed_in": True,
        "id": actor.id,
        "name": actor.name,
        "role": actor.role,
        "csrf": csrf,
        "features": features,
    }


@hookimpl
def register_routes(appliance: Appliance) -> web.Application:
    """Its own sub-app, so that every answer under /ui carries the security headers."""
    ui = web.Application(middlewares=[security_headers])
    ui.add_routes(
        [
            web.get("/", page),
            web.get("/session", whoami),
            web.post("/session", sign_in),
            web.delete("/session", sign_out),
            web.static("/static", STATIC),
        ]
    )
    return ui
