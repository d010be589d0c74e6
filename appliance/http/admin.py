"""The appliance's own endpoints: health, the well-known record, plugins and tokens."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from appliance.auth import create_token, list_tokens, revoke_token
from appliance.core import Appliance
from appliance.discovery.mdns import instance_name
from appliance.errors import BadRequest
from appliance.hardware.report import hardware_report
from appliance.http.middleware import read_json, require, track_change
from appliance.http.validation import parse_body
from appliance.keys import appliance_of
from appliance.metrics import CONTENT_TYPE
from appliance.quotas import TokenLimits, parse_expiry

routes = web.RouteTableDef()


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    """Ollama clients probe the root and expect this exact text; a browser goes to the page."""
    if "text/html" in request.headers.get("Accept", "") and _has_web_page(request):
        raise web.HTTPFound("/ui/")
    return web.Response(text="Ollama is running")


def _has_web_page(request: web.Request) -> bool:
    return any(
        isinstance(r, web.PrefixedSubAppResource) and r.canonical == "/ui"
        for r in request.app.router.resources()
    )


@routes.get("/appliance/health")
async def health(request: web.Request) -> web.Response:
    appliance = appliance_of(request)
    return web.json_response(
        {
            "status": "ok",
            "id": appliance.id,
            "version": appliance.version,
            "uptime_s": round(time.time() - appliance.started_at, 1),
            "models_loaded": [m.name for m in appliance.scheduler.loaded()],
        }
    )


async def well_known_record(appliance: Appliance) -> dict[str, Any]:
    reg = appliance.registry
    return {
        "id": appliance.id,
        "name": appliance.announced_name or instance_name(appliance),
        "version": appliance.version,
        "apis": {
            "openai": {"base": "/v1"},
            "ollama": {"base": "/api"},
            "appliance": {"base": "/appliance"},
        },
        "models": {
            "chat": reg.chat.names(),
            "embeddings": reg.embedders.names(),
            "transcription": reg.transcribers.names(),
        },
        "default_models": {
            "chat": appliance.default_model("chat"),
            "embeddings": appliance.default_model("embed"),
            "transcription": appliance.default_model("transcribe"),
        },
        "auth": await appliance.auth_mode(),
        "profile": {"id": appliance.profile.id, "name": appliance.profile.name},
    }


@routes.get("/.well-known/appliance.json")
async def well_known(request: web.Request) -> web.Response:
    return web.json_response(await well_known_record(appliance_of(request)))


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format, for an admin token or a ``metrics`` one."""
    require(request, "metrics.read")
    # Collectors read the database (history size, RAG chunks): off the event loop.
    body = await asyncio.to_thread(appliance_of(request).metrics.exposition)
    return web.Response(
        body=body,
        headers={"Content-Type": CONTENT_TYPE},
    )


@routes.get("/appliance/audit")
async def audit(request: web.Request) -> web.Response:
    """The audit log, newest first: ``?actor=`` (token id), ``?action=`` (prefix), ``?since=``
    and ``?until=`` (Unix time), ``?limit=`` (at most 1000)."""
    require(request, "audit.read")
    query = request.query
    where: list[str] = []
    params: list[Any] = []
    if query.get("actor"):
        where.append("actor = ?")
        params.append(query["actor"])
    if query.get("action"):
        where.append("action like ? escape '\\'")
        params.append(query["action"].replace("\\", "\\\\").replace("%", "\\%") + "%")
    for name, op in (("since", ">="), ("until", "<=")):
        if query.get(name):
            try:
                params.append(float(query[name]))
            except ValueError:
                raise BadRequest(f"{name} must be a Unix time", param=name) from None
            where.append(f"at {op} ?")
    try:
        limit = max(1, min(int(query.get("limit", "200")), 1000))
    except ValueError:
        raise BadRequest("limit must be a number", param="limit") from None
    clause = " and ".join(where) or None
    rows = await appliance_of(request).db.read(
        lambda db: list(
            db["audit"].rows_where(clause, params, order_by="at desc, id desc", limit=limit)
        )
    )
    return web.json_response({"audit": rows})


@routes.get("/appliance/plugins")
async def plugins(request: web.Request) -> web.Response:
    require(request, "plugins.read")
    return web.json_response({"plugins": appliance_of(request).plugins.as_list()})


class TokenCreate(BaseModel):
    role: str = Field(pattern="^(user|admin|metrics)$")
    name: str = Field(default="", max_length=200)
    models: list[str] | None = None
    rpm: int | None = Field(default=None, ge=1)
    tokens_per_day: int | None = Field(default=None, ge=1)
    expires: str | None = Field(default=None, max_length=40)
    """30d, 12h, 90m, 2w, or a date (2027-01-31)."""

    def limits(self) -> TokenLimits:
        return TokenLimits(
            models=tuple(self.models) if self.models is not None else None,
            rpm=self.rpm,
            tokens_per_day=self.tokens_per_day,
            expires_at=parse_expiry(self.expires) if self.expires else None,
        )


@routes.get("/appliance/tokens")
async def tokens(request: web.Request) -> web.Response:
    require(request, "tokens.manage")
    rows = await appliance_of(request).db.read(list_tokens)
    return web.json_response({"tokens": rows})


@routes.post("/appliance/tokens")
async def new_token(request: web.Request) -> web.Response:
    actor = require(request, "tokens.manage")
    body = parse_body(TokenCreate, await read_json(request))
    appliance = appliance_of(request)
    limits = body.limits()
    token, row = await appliance.db.write(
        lambda db: create_token(db, body.role, body.name, created_by=actor.id, limits=limits)
    )
    track_change(request, "token.created", row["id"], role=body.role, **limits.columns())
    return web.json_response({**row, "token": token}, status=201)


@routes.delete("/appliance/tokens/{token_id}")
async def delete_token(request: web.Request) -> web.Response:
    require(request, "tokens.manage")
    appliance = appliance_of(request)
    token_id = request.match_info["token_id"]
    row = await appliance.db.write(lambda db: revoke_token(db, token_id))
    track_change(request, "token.revoked", token_id)
    return web.json_response({**row, "revoked": True})


@routes.get("/appliance/models")
async def models(request: web.Request) -> web.Response:
    """What is on the box (verified store), what is served, and the catalog's ids."""
    require(request, "models.list")
    appliance = appliance_of(request)
    reg = appliance.registry
    return web.json_response(
        {
            "served": {
                "chat": reg.chat.names(),
                "embeddings": reg.embedders.names(),
                "transcription": reg.transcribers.names(),
            },
            "running": appliance.scheduler.usage(),
            "stored": appliance.store.describe(),
            "catalog": [
                {
                    "id": m.id,
                    "kind": m.kind,
                    "parameters": m.parameters,
                    "quants": [q.name for q in m.quants],
                    "license": m.license,
                }
                for m in appliance.catalog.models
            ],
        }
    )


@routes.get("/appliance/hardware")
async def hardware(request: web.Request) -> web.Response:
    """Facts, the profile, the choice of models and why."""
    require(request, "models.list")
    return web.json_response(hardware_report(appliance_of(request)))
