"""A site with several boxes: boxes with the same ``fleet_key`` find each other over the mDNS
they already announce, prove they hold the key, and serve each other's models (a request for
a model only a peer serves is forwarded to the least-loaded peer and streamed through).

Off unless IT sets ``fleet_key`` (or ``[fleet] key`` on the config stick).
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from appliance import (
    Actor,
    Appliance,
    Forbidden,
    StateKey,
    actor_of,
    appliance_of,
    hookimpl,
    require,
)
from appliance_fleet.auth import HEADER, prove, verify
from appliance_fleet.copy import copy_from_peer, send_model
from appliance_fleet.peers import NAME, Fleet

ROUTE_PREFIX = "/appliance/fleet"
PERMISSIONS = ("models.register",)
FLEET: StateKey[Fleet] = StateKey("fleet")
PEER_ACTIONS = frozenset({"models.use", "models.list", "models.copy", "fleet.hello"})


def _fleet(appliance: Appliance) -> Fleet | None:
    if not appliance.settings.fleet_key:
        return None
    return appliance.state(FLEET, lambda: Fleet(appliance))


@hookimpl
def mdns_properties(appliance: Appliance) -> dict[str, str] | None:
    fleet = _fleet(appliance)
    return {"fleet": fleet.id} if fleet else None


@hookimpl
def actor_from_request(appliance: Appliance, request: web.Request) -> Actor | None:
    """A peer's request, signed with the fleet key (which itself never travels)."""
    header = request.headers.get(HEADER)
    fleet = _fleet(appliance)
    if not header or fleet is None:
        return None
    box_id = verify(fleet.key, header, request.method, request.path)
    if box_id is None or box_id == fleet.box_id:
        return None
    return Actor(id=f"fleet:{box_id}", name=f"fleet peer {box_id}", role="fleet", via="fleet")


@hookimpl
def permission_allowed(
    appliance: Appliance, actor: Actor | None, action: str, resource: str | None
) -> bool | None:
    if actor is not None and actor.role == "fleet":
        return action in PEER_ACTIONS or None
    return None


@asynccontextmanager
async def _running(appliance: Appliance) -> AsyncIterator[None]:
    fleet = _fleet(appliance)
    if fleet is not None:
        await fleet.start()
    try:
        yield
    finally:
        if fleet is not None:
            await fleet.stop()
            appliance.drop_state(FLEET)


@hookimpl
def lifespan(appliance: Appliance) -> Any:
    return _running(appliance)


async def hello(request: web.Request) -> web.Response:
    """A peer asks who this box is: its models and load, and proof that it holds the key."""
    require(request, "fleet.hello")
    appliance = appliance_of(request)
    fleet = _fleet(appliance)
    actor = actor_of(request)
    if fleet is None or actor is None or actor.role != "fleet":
        raise Forbidden("only boxes of this fleet may ask")
    usage = {u["name"]: u["slots_busy"] + u["queued"] for u in appliance.scheduler.usage()}
    return web.json_response(
        {
            "id": fleet.box_id,
            "name": appliance.announced_name or appliance.settings.instance_name or fleet.box_id,
            "models": fleet.local_models(),
            "load": usage,
            "proof": prove(
                fleet.key, fleet.box_id, request.query.get("challenge", ""), fleet.cert_sha256
            ),
            "at": time.time(),
        }
    )


async def peers(request: web.Request) -> web.Response:
    """For IT: this box's fleet and its peers (models, load, last seen)."""
    require(request, "fleet.manage")
    fleet = _fleet(appliance_of(request))
    if fleet is None:
        return web.json_response({"fleet": None, "peers": []})
    return web.json_response(
        {"fleet": fleet.id, "peers": [p.public() for p in fleet.peers.values()]}
    )


@hookimpl
def register_routes(appliance: Appliance) -> list[web.AbstractRouteDef]:
    return [
        web.get("/hello", hello),
        web.get("/", peers),
        web.get("/models/{model}/{quant}", send_model),
    ]


@hookimpl
def register_model_sources(appliance: Appliance) -> dict[str, Any] | None:
    """``fleet:NAME``: copy a model file from the peer called NAME (``--from-peer NAME``)."""
    if not appliance.settings.fleet_key:
        return None
    return {"fleet": functools.partial(copy_from_peer, appliance)}


__all__ = ["NAME"]


@hookimpl
def register_commands(cli: Any) -> None:
    import asyncio

    import click

    from appliance import opened

    @cli.group("fleet")
    def fleet_group() -> None:
        """The boxes that share this box's fleet key."""

    @fleet_group.command("list")
    @click.option("--timeout", "listen_s", default=3.0, help="Seconds to listen for boxes.")
    def list_command(listen_s: float) -> None:
        """Find the fleet's boxes on the LAN (mDNS) and check that each holds the key."""
        with opened() as appliance:
            if not appliance.settings.fleet_key:
                raise click.ClickException("no fleet_key is set on this box")
            fleet = Fleet(appliance)

            async def find() -> list[dict[str, Any]]:
                await fleet.start()
                try:
                    await asyncio.sleep(listen_s)
                    return [p.public() for p in fleet.peers.values()]
                finally:
                    await fleet.stop()
                    await appliance.zeroconf.close()

            found = asyncio.run(find())
        click.echo(f"fleet {fleet.id}: {len(found)} peer(s)")
        for peer in found:
            models = ", ".join(m for names in peer["models"].values() for m in names)
            click.echo(f"  {peer['name']}  {peer['url']}  models: {models or 'none'}")
