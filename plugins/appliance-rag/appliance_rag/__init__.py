"""RAG over local files: collections, incremental ingestion, hybrid search, cited answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import click
from aiohttp import web
from pydantic import BaseModel, Field

from appliance import (
    Appliance,
    BadRequest,
    ContextChunk,
    DocumentLoader,
    Migration,
    StateKey,
    appliance_of,
    hookimpl,
    message_text,
    parse_body,
    read_form,
    read_json,
    require,
)
from appliance_rag.cli import rag_cli
from appliance_rag.index import create_tables
from appliance_rag.loaders import LOADERS
from appliance_rag.metrics import IngestionCollector
from appliance_rag.service import UPLOADS, Collections

NAME = "rag"
ROUTE_PREFIX = "/appliance/rag"
CONTEXT_CHUNKS = 4
SERVICE: StateKey[Collections] = StateKey("rag.collections")
routes = web.RouteTableDef()


def service(appliance: Appliance) -> Collections:
    return appliance.state(
        SERVICE, lambda: Collections(appliance, appliance.registry.loaders.values() or LOADERS)
    )


@hookimpl
def register_migrations(register: Callable[[str, Migration], None]) -> None:
    register(NAME, create_tables)


@hookimpl
def register_document_loaders(register: Callable[[DocumentLoader], None]) -> None:
    for loader in LOADERS:
        register(loader)


async def _rescan(appliance: Appliance, interval: float) -> None:
    """Keep folders current: a periodic scan re-reads only what changed."""
    collections = service(appliance)
    while True:
        await asyncio.sleep(interval)
        for name in await collections.names():
            collections.start(name)


@asynccontextmanager
async def _lifespan(appliance: Appliance) -> AsyncIterator[None]:
    collections = service(appliance)
    appliance.registry.retrievers.add(NAME, collections, NAME)  # for other plugins to use
    metrics = IngestionCollector(collections)
    appliance.metrics.registry.register(metrics)
    for name in await collections.names():  # resume and catch up after a restart
        collections.start(name)
    interval = appliance.settings.rag_scan_interval_s
    scanner = asyncio.create_task(_rescan(appliance, interval)) if interval > 0 else None
    yield
    if scanner is not None:
        scanner.cancel()
    for task in collections.tasks.values():
        task.cancel()
    appliance.metrics.registry.unregister(metrics)
    appliance.drop_state(SERVICE)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(rag_cli)


@hookimpl
def lifespan(appliance: Appliance) -> Any:
    return _lifespan(appliance)


@hookimpl
async def prompt_context(appliance: Appliance, request: dict[str, Any]) -> list[ContextChunk]:
    collection = request.get("rag")
    if isinstance(collection, dict):
        collection = collection.get("collection")
    if not collection:
        return []
    question = next(
        (
            message_text(m.get("content"))
            for m in reversed(request.get("messages", []))
            if m.get("role") == "user"
        ),
        "",
    )
    return await service(appliance).retrieve(str(collection), question, CONTEXT_CHUNKS)


class CollectionIn(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    paths: list[str] = Field(default_factory=list)
    globs: list[str] = Field(default_factory=list)


def uploads_dir(appliance: Appliance, name: str) -> Path:
    return appliance.settings.home / UPLOADS / name


class QueryIn(BaseModel):
    collection: str
    query: str
    top_k: int = Field(default=5, ge=1, le=50)


@routes.get("/collections")
async def list_collections(request: web.Request) -> web.Response:
    require(request, "rag.query")
    collections = service(appliance_of(request))
    return web.json_response(
        {"collections": [await collections.get(n) for n in await collections.names()]}
    )


@routes.post("/collections")
async def create_collection(request: web.Request) -> web.Response:
    require(request, "rag.manage")
    appliance = appliance_of(request)
    body = parse_body(CollectionIn, await read_json(request))
    uploads = uploads_dir(appliance, body.name)
    uploads.mkdir(parents=True, exist_ok=True)  # files uploaded over the API land here
    roots = [Path(p) for p in body.paths] + [uploads]
    row = await service(appliance).create(body.name, roots, body.globs)
    return web.json_response({"name": row["name"], "status": row["status"]}, status=201)


@routes.post("/collections/{name}/files")
async def upload_files(request: web.Request) -> web.Response:
    """Add uploaded files (multipart ``file`` fields) to a collection and index them."""
    require(request, "rag.manage")
    appliance = appliance_of(request)
    name = request.match_info["name"]
    collections = service(appliance)
    await collections.get(name)
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("send multipart/form-data with one or more 'file' fields")
    target = uploads_dir(appliance, name)
    target.mkdir(parents=True, exist_ok=True)
    form = await read_form(request, appliance.settings.max_body_bytes, ("file",))
    saved = []
    for part in form.files:
        filename = Path(part.filename).name
        suffix = Path(filename).suffix.lower()
        if not filename or filename.startswith(".") or suffix not in collections.loaders:
            raise BadRequest(f"{filename!r}: unsupported file type", param="file")
        await asyncio.to_thread((target / filename).write_bytes, part.data)
        saved.append(filename)
    if not saved:
        raise BadRequest("'file' is required", param="file")
    collections.start(name)
    return web.json_response({"name": name, "uploaded": saved, "status": "indexing"}, status=201)


@routes.get("/collections/{name}")
async def show_collection(request: web.Request) -> web.Response:
    require(request, "rag.query")
    return web.json_response(await service(appliance_of(request)).get(request.match_info["name"]))


@routes.post("/collections/{name}/reindex")
async def reindex(request: web.Request) -> web.Response:
    require(request, "rag.manage")
    collections = service(appliance_of(request))
    await collections.get(request.match_info["name"])
    collections.start(request.match_info["name"])
    return web.json_response({"name": request.match_info["name"], "status": "indexing"})


@routes.delete("/collections/{name}")
async def delete_collection(request: web.Request) -> web.Response:
    require(request, "rag.manage")
    await service(appliance_of(request)).remove(request.match_info["name"])
    return web.json_response({"name": request.match_info["name"], "deleted": True})


@routes.post("/query")
async def query(request: web.Request) -> web.Response:
    require(request, "rag.query")
    body = parse_body(QueryIn, await read_json(request))
    hits = await service(appliance_of(request)).search(body.collection, body.query, body.top_k)
    return web.json_response({"collection": body.collection, "results": hits})


@hookimpl
def register_routes(appliance: Appliance) -> list[web.RouteDef]:
    return [r for r in routes if isinstance(r, web.RouteDef)]
