"""appliance-fortune: a fortune a day for the office.

A complete third-party plugin written only from docs/plugin-hooks.md. It uses every kind of
contribution a plugin makes: routes (``web.get`` and ``web.static``), a migration for its own
table, a lifespan, a command, a permission vote for its own action, and per-box state. It imports
nothing of the core but ``appliance``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click
import sqlite_utils
from aiohttp import web

from appliance import (
    Actor,
    Appliance,
    BadRequest,
    Migration,
    NotFound,
    StateKey,
    appliance_of,
    hookimpl,
    migration,
    opened,
    read_json,
    require,
)

log = logging.getLogger(__name__)
NAME = "fortune"
STATIC = Path(__file__).parent / "static"
SEED = (
    "A clean desk is a sign of a full drawer.",
    "The printer knows when you are in a hurry.",
    "Backups you have not restored are hopes, not backups.",
)


@dataclass
class Served:
    """What this plugin keeps per box while it serves: how many fortunes it has told."""

    told: int = 0
    started_at: float = field(default_factory=time.time)


SERVED: StateKey[Served] = StateKey("fortune.served")


@migration("create_fortunes")
def create_fortunes(db: sqlite_utils.Database) -> None:
    db["fortunes"].create({"id": int, "text": str, "added_at": float}, pk="id")


@hookimpl
def register_migrations(register: Callable[[str, Migration], None]) -> None:
    register(NAME, create_fortunes)


@hookimpl
def permission_allowed(
    appliance: Appliance, actor: Actor | None, action: str, resource: str | None
) -> bool | None:
    """Anyone with a token may read fortunes; adding them stays with admins (the core's rule)."""
    if action == "fortune.read" and actor is not None:
        return True
    return None


async def today(request: web.Request) -> web.Response:
    require(request, "fortune.read")
    appliance = appliance_of(request)
    rows = await appliance.db.read(lambda db: list(db["fortunes"].rows_where(order_by="id")))
    if not rows:
        raise NotFound("no fortunes yet; an admin adds some with POST /plugins/fortune/")
    day = int(time.time() // 86400)
    served = appliance.state(SERVED, Served)
    served.told += 1
    return web.json_response({"fortune": rows[day % len(rows)]["text"], "told": served.told})


async def add(request: web.Request) -> web.Response:
    require(request, "fortune.manage")  # no plugin allows it, so only admins may
    text = (await read_json(request)).get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("send {'text': 'the fortune'}", param="text")
    appliance = appliance_of(request)
    row = {"text": text.strip(), "added_at": time.time()}
    await appliance.db.write(lambda db: db["fortunes"].insert(row))
    return web.json_response(row, status=201)


@hookimpl
def register_routes(appliance: Appliance) -> list[web.AbstractRouteDef]:
    return [
        web.get("/today", today),
        web.post("/", add),
        web.static("/about", STATIC),
    ]


@asynccontextmanager
async def _seed_and_count(appliance: Appliance) -> AsyncIterator[None]:
    """At start-up (the database is open): seed an empty table; at shutdown: log the count."""

    def seed(db: sqlite_utils.Database) -> None:
        if not db["fortunes"].count:
            db["fortunes"].insert_all({"text": t, "added_at": time.time()} for t in SEED)

    await appliance.db.write(seed)
    served = appliance.state(SERVED, Served)
    try:
        yield
    finally:
        log.info("told %d fortunes since %s", served.told, time.ctime(served.started_at))
        appliance.drop_state(SERVED)


@hookimpl
def lifespan(appliance: Appliance) -> AbstractAsyncContextManager[None]:
    return _seed_and_count(appliance)


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.group(NAME)
    def fortune() -> None:
        """Fortunes for the office."""

    @fortune.command("add")
    @click.argument("text")
    def add_command(text: str) -> None:
        """Add a fortune."""
        with opened() as appliance:
            appliance.db.write_sync(
                lambda db: db["fortunes"].insert({"text": text, "added_at": time.time()})
            )
        click.echo("added")

    @fortune.command("list")
    def list_command() -> None:
        """Every fortune, oldest first."""
        with opened() as appliance:
            rows = appliance.db.read_sync(lambda db: list(db["fortunes"].rows_where(order_by="id")))
        for row in rows:
            click.echo(row["text"])
