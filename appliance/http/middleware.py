"""Request ids, auth, body limits and one JSON error shape per API family."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from appliance.auth import OPEN_ACTOR, Actor
from appliance.core import Event
from appliance.errors import (
    ApplianceError,
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
)
from appliance.keys import actor_of, appliance_of, request_id_of, set_actor, set_request_id

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNAUDITED_PATHS = frozenset({"/appliance/health", "/.well-known/appliance.json"})
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def is_ollama_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def error_response(path: str, status: int, error: dict[str, Any]) -> web.Response:
    """The error body for the API family of ``path``: Ollama's on /api, OpenAI's elsewhere."""
    if is_ollama_path(path):
        body: dict[str, Any] = {"error": error["message"]}
    else:
        body = {"error": error}
    return web.json_response(body, status=status)


def _http_error_dict(exc: web.HTTPException) -> dict[str, Any]:
    messages = {
        404: "no such endpoint; see the API list in the README",
        405: "method not allowed for this endpoint",
        413: "request body is too large",
    }
    message = messages.get(exc.status, exc.reason)
    kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
    return {"message": message, "type": kind, "param": None, "code": None}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    supplied = request.headers.get("X-Request-Id", "")
    request_id = supplied if _REQUEST_ID_RE.match(supplied) else "req_" + secrets.token_hex(8)
    set_request_id(request, request_id)
    started = time.monotonic()
    try:
        response = await handler(request)
    except ApplianceError as exc:
        response = error_response(request.path, exc.status, exc.as_dict())
        response.headers.update(exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(request.path, exc.status, _http_error_dict(exc))
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("unhandled error in %s %s (%s)", request.method, request.path, request_id)
        response = error_response(
            request.path,
            500,
            {
                "message": f"internal error; quote request id {request_id} to IT",
                "type": "server_error",
                "param": None,
                "code": None,
            },
        )
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    _audit(request, response.status)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    appliance_of(request).metrics.request(
        route, request.method, response.status, time.monotonic() - started
    )
    return response


def track_change(request: web.Request, action: str, resource: str, **detail: object) -> None:
    """Audit a change a request made (a token, a plugin, a model file): who, from where."""
    appliance_of(request).track(
        Event(
            action,
            actor=actor_of(request),
            resource=resource,
            address=request.remote or "",
            request_id=request_id_of(request),
            detail=dict(detail),
        )
    )


def _audit(request: web.Request, status: int) -> None:
    if request.path in UNAUDITED_PATHS:
        return
    appliance = appliance_of(request)
    appliance.track(
        Event(
            name="request",
            actor=actor_of(request),
            resource=f"{request.method} {request.path}",
            address=request.remote or "",
            request_id=request_id_of(request),
            status=status,
        )
    )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    appliance = appliance_of(request)
    actor = await identify(request)
    if actor is None and await appliance.is_open():
        actor = OPEN_ACTOR
    set_actor(request, actor)
    if actor is None and not appliance.is_public(request.path) and request.method != "OPTIONS":
        address = request.remote or ""
        appliance.auth_brake.check(address)
        if "Authorization" in request.headers:
            appliance.auth_brake.failed(address)
            raise Unauthorized(
                "the bearer token is not valid, has expired or was revoked", code="invalid_api_key"
            )
        raise Unauthorized(
            "this box requires a bearer token: send 'Authorization: Bearer <token>' "
            "(IT creates one with `appliance tokens create --role user`)",
            code="missing_api_key",
        )
    return await handler(request)


async def identify(request: web.Request) -> Actor | None:
    """The first plugin that recognises the caller (awaited: an async None is no answer)."""
    appliance = appliance_of(request)
    for answer in await appliance.plugins.acall(
        "actor_from_request", appliance=appliance, request=request
    ):
        if isinstance(answer.value, Actor):
            return answer.value
        log.error("actor_from_request of %s returned %r, not an Actor", answer.plugin, answer.value)
    return None


def require(request: web.Request, action: str, resource: str | None = None) -> Actor:
    """The request's actor, if it may do ``action``; otherwise 401 or 403."""
    actor = actor_of(request)
    if actor is None:
        raise Unauthorized("a bearer token is required")
    if not appliance_of(request).allowed(actor, action, resource):
        raise Forbidden(f"the {actor.role} role may not do '{action}'; ask IT for an admin token")
    return actor


@asynccontextmanager
async def body_deadline(request: web.Request) -> AsyncIterator[None]:
    """Bound the time to receive a request's body (``body_timeout_s``): 408 past it."""
    limit = appliance_of(request).settings.body_timeout_s
    try:
        async with asyncio.timeout(limit):
            yield
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {limit:g} s") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, within the JSON size limit; 4xx otherwise."""
    limit = appliance_of(request).settings.max_json_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"JSON body is {request.content_length} bytes; the limit is {limit}")
    raw = bytearray()
    async with body_deadline(request):
        async for chunk in request.content.iter_chunked(65536):
            raw.extend(chunk)
            if len(raw) > limit:
                raise PayloadTooLarge(f"JSON body exceeds the limit of {limit} bytes")
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    try:  # "\ud800" escapes decode to lone surrogates, which no engine or database can store
        if b"\\ud" in raw.lower():
            json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            "the request body holds text that is not valid Unicode (a lone surrogate such as "
            "\\ud800)"
        ) from None
    return data
