"""Presets: named models made of a base model, a system prompt and sampler parameters.

The whole plugin contract in one place: a migration for its own table, a lifespan that loads
stored presets once the database is open, routes under /plugins/presets/, a declared permission
(``models.register``) that the core checks before a preset becomes a model, and a CLI command.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import click
import sqlite_utils
from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from appliance import (
    Appliance,
    BadRequest,
    Migration,
    NotFound,
    appliance_of,
    hookimpl,
    migration,
    opened,
    parse_body,
    read_json,
    require,
)
from appliance_presets.model import PARAMETERS, PresetModel, preset_info

NAME = "presets"
PERMISSIONS = ("models.register",)
routes = web.RouteTableDef()


@migration("create_presets")
def _create(db: sqlite_utils.Database) -> None:
    db.table("presets").create(
        {"name": str, "base": str, "system": str, "parameters": str, "created_at": float},
        pk="name",
    )


@hookimpl
def register_migrations(register: Callable[[str, Migration], None]) -> None:
    register(NAME, _create)


class PresetIn(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*(:[a-z0-9._-]+)?$", max_length=64)
    base: str = Field(min_length=1)
    system: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("parameters")
    @classmethod
    def _known(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - set(PARAMETERS)
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}; use {sorted(PARAMETERS)}")
        return value


def _activate(appliance: Appliance, row: dict[str, Any]) -> PresetModel:
    base = appliance.registry.chat.get(row["base"])
    model = PresetModel(row["name"], base, row["system"], json.loads(row["parameters"] or "{}"))
    appliance.add_chat_model(NAME, model)
    return model


@asynccontextmanager
async def _load_presets(appliance: Appliance) -> AsyncIterator[None]:
    rows = await appliance.db.read(lambda db: list(db.table("presets").rows))
    for row in rows:
        try:
            _activate(appliance, row)
        except Exception as exc:  # a preset whose base model is gone is skipped, not fatal
            appliance.plugins.records[NAME].error = f"preset {row['name']}: {exc}"
    yield


@hookimpl
def lifespan(appliance: Appliance) -> Any:
    return _load_presets(appliance)


@routes.get("/")
async def list_presets(request: web.Request) -> web.Response:
    require(request, "models.list")
    appliance = appliance_of(request)
    presets = [
        preset_info(m) for m in appliance.registry.chat.values() if isinstance(m, PresetModel)
    ]
    return web.json_response({"presets": presets})


@routes.post("/")
async def create_preset(request: web.Request) -> web.Response:
    require(request, "presets.manage")
    appliance = appliance_of(request)
    body = parse_body(PresetIn, await read_json(request))
    if body.name in appliance.registry.chat:
        raise BadRequest(f"a model named {body.name!r} already exists", param="name")
    row = {
        "name": body.name,
        "base": body.base,
        "system": body.system,
        "parameters": json.dumps(body.parameters),
        "created_at": time.time(),
    }
    model = _activate(appliance, row)
    await appliance.db.write(lambda db: db.table("presets").insert(row))
    return web.json_response(preset_info(model), status=201)


@routes.delete("/{name}")
async def delete_preset(request: web.Request) -> web.Response:
    require(request, "presets.manage")
    appliance = appliance_of(request)
    name = request.match_info["name"]
    if not isinstance(appliance.registry.chat.find(name), PresetModel):
        raise NotFound(f"no preset named {name!r}")
    appliance.remove_chat_model(NAME, name)
    await appliance.db.write(lambda db: db.table("presets").delete(name))
    return web.json_response({"name": name, "deleted": True})


@hookimpl
def register_routes(appliance: Appliance) -> web.RouteTableDef:
    return routes


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("presets")
    def presets_command() -> None:
        """List stored presets."""
        with opened() as appliance:
            rows = appliance.db.read_sync(lambda db: list(db.table("presets").rows))
        for row in rows:
            click.echo(f"{row['name']}  (base {row['base']})  {row['system'][:60]}")
