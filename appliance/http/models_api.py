"""Model files over HTTP, for admins (the web page's Models section): fetch a catalogued model
into the store, verify every stored file, remove one. Fetching and verifying take minutes, so
they run as tasks whose progress ``GET /appliance/models/tasks`` reports; each is audited. The
same work as ``appliance models fetch|verify|remove``, through the same functions."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from aiohttp import web
from pydantic import Field

from appliance.core import Appliance, Event
from appliance.errors import ApplianceError, BadRequest, Conflict, NotFound
from appliance.http.middleware import read_json, require, track_change
from appliance.http.validation import Body, parse_body
from appliance.keys import appliance_of
from appliance.models.catalog import CatalogModel
from appliance.models.sources import fetch_model, fetchable
from appliance.models.store import sha256_file

routes = web.RouteTableDef()
KEEP_TASKS = 50


class FetchBody(Body):
    id: str = Field(min_length=1)
    quant: str | None = None
    source: str | None = None
    """A path on the box (a mounted stick) or a URL; default: the catalog's sources."""


def _tasks(appliance: Appliance) -> dict[str, dict[str, Any]]:
    return appliance.model_tasks


def _start(appliance: Appliance, kind: str, model: str, work: Any) -> dict[str, Any]:
    tasks = _tasks(appliance)
    if any(t["status"] == "running" and t["model"] == model for t in tasks.values()):
        raise Conflict(f"{kind} of {model} is already running")
    task: dict[str, Any] = {
        "id": secrets.token_hex(6),
        "kind": kind,
        "model": model,
        "status": "running",
        "done": 0,
        "total": 1,
        "error": None,
        "started_at": time.time(),
        "finished_at": None,
    }
    tasks[task["id"]] = task
    for old in list(tasks)[:-KEEP_TASKS]:
        tasks.pop(old)

    async def run() -> None:
        try:
            await work(task)
            task["status"] = "done"
        except ApplianceError as exc:
            task["status"], task["error"] = "failed", exc.message
        except Exception as exc:  # a task's failure is its report, never the box's
            task["status"], task["error"] = "failed", f"{type(exc).__name__}: {exc}"
        task["finished_at"] = time.time()
        appliance.track(Event(f"model.{kind}", resource=model, detail=dict(task)))

    appliance.spawn(run())
    return task


def _catalogued(appliance: Appliance, model_id: str) -> CatalogModel:
    try:
        return appliance.catalog.get(model_id)
    except KeyError as exc:
        raise NotFound(str(exc.args[0]), param="id") from None


@routes.post("/appliance/models/fetch")
async def fetch(request: web.Request) -> web.Response:
    require(request, "models.manage")
    appliance = appliance_of(request)
    body = parse_body(FetchBody, await read_json(request))
    model = _catalogued(appliance, body.id)
    try:
        quant = model.quant(body.quant)
    except KeyError as exc:
        raise BadRequest(str(exc.args[0]), param="quant") from None
    sources = appliance.model_sources()
    if body.source and not fetchable(body.source, sources):
        raise BadRequest(f"this box cannot fetch from {body.source!r}", param="source")

    async def work(task: dict[str, Any]) -> None:
        await asyncio.to_thread(
            fetch_model, appliance.store, model, quant, None, body.source, sources
        )
        task["done"] = 1

    task = _start(appliance, "fetch", model.id, work)
    track_change(request, "model.fetch_started", model.id)
    return web.json_response(task, status=202)


@routes.post("/appliance/models/verify")
async def verify(request: web.Request) -> web.Response:
    require(request, "models.manage")
    appliance = appliance_of(request)
    stored = appliance.store.installed()

    async def work(task: dict[str, Any]) -> None:
        task["total"], bad = len(stored), []
        for item in stored:
            actual = await asyncio.to_thread(sha256_file, item.path)
            if actual != item.sha256:
                bad.append(item.model.id)
            task["done"] += 1
        if bad:
            raise ApplianceError(f"these files do not match their sha256: {', '.join(bad)}")

    task = _start(appliance, "verify", "all", work)
    track_change(request, "model.verify_started", "all")
    return web.json_response(task, status=202)


@routes.get("/appliance/models/tasks")
async def tasks(request: web.Request) -> web.Response:
    require(request, "models.manage")
    return web.json_response({"tasks": list(reversed(_tasks(appliance_of(request)).values()))})


@routes.delete("/appliance/models/{id}")
async def remove(request: web.Request) -> web.Response:
    require(request, "models.manage")
    appliance = appliance_of(request)
    model = _catalogued(appliance, request.match_info["id"])
    served = (
        appliance.registry.chat,
        appliance.registry.embedders,
        appliance.registry.transcribers,
    )
    if any(model.id in group for group in served):
        raise Conflict(
            f"{model.id} is being served; disable it (or choose another model) and restart first"
        )
    removed = await asyncio.to_thread(appliance.store.remove, model)
    if not removed:
        raise NotFound(f"{model.id} is not on this box", param="id")
    track_change(request, "model.removed", model.id)
    return web.json_response({"id": model.id, "removed": [str(p) for p in removed]})
