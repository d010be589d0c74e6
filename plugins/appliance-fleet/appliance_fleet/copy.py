"""Model files between boxes of a fleet: a peer sends a stored file to a box that proves the key
(``GET /appliance/fleet/models/{id}/{quant}``), and ``fleet:NAME`` is a model source on the
asking side (``appliance models fetch ID --from-peer NAME``). The store checks the copy against
the catalog's sha256, as it checks every other source."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from appliance import (
    Appliance,
    ApplianceError,
    CatalogModel,
    Forbidden,
    NotFound,
    Quant,
    actor_of,
    appliance_of,
    require,
)
from appliance_fleet.auth import HEADER, sign
from appliance_fleet.peers import Fleet, Peer

FIND_S = 10.0
CHUNK = 1 << 20
MODELS = "/appliance/fleet/models"


class PeerCopyError(ApplianceError):
    status = 502
    error_type = "model_source_error"


async def send_model(request: web.Request) -> web.StreamResponse:
    """A stored model file, to a box of this fleet only."""
    require(request, "models.copy")
    actor = actor_of(request)
    if actor is None or actor.role != "fleet":
        raise Forbidden("only boxes of this fleet may copy model files")
    appliance = appliance_of(request)
    model_id, quant_name = request.match_info["model"], request.match_info["quant"]
    try:
        model = appliance.catalog.get(model_id)
        quant = model.quant(quant_name)
    except KeyError:
        raise NotFound(f"{model_id} {quant_name} is not in this box's catalog") from None
    if not appliance.store.has(model, quant):
        raise NotFound(f"this box has no file for {model_id} {quant_name}")
    return web.FileResponse(appliance.store.path_for(model, quant))


def _match(peers: dict[str, Peer], name: str) -> Peer | None:
    wanted = name.casefold()
    return next((p for p in peers.values() if wanted in (p.name.casefold(), p.id.casefold())), None)


async def _copy(fleet: Fleet, name: str, model: CatalogModel, quant_name: str, dest: Path) -> None:
    deadline = time.monotonic() + FIND_S
    while (peer := _match(fleet.peers, name)) is None:
        if time.monotonic() > deadline:
            seen = ", ".join(sorted(p.name for p in fleet.peers.values())) or "none"
            raise PeerCopyError(
                f"no box of this fleet named {name!r} answered within {FIND_S:g} s (seen: {seen})"
            )
        await asyncio.sleep(0.2)
    path = f"{MODELS}/{model.id}/{quant_name}"
    headers = {HEADER: sign(fleet.key, fleet.box_id, "GET", path)}
    try:
        async with fleet.session.get(
            peer.url + path,
            headers=headers,
            ssl=peer.ssl,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
        ) as response:
            if response.status != 200:
                detail = (await response.text())[:300]
                raise PeerCopyError(f"{peer.name} answered {response.status}: {detail}")
            with dest.open("wb") as out:
                async for chunk in response.content.iter_chunked(CHUNK):
                    out.write(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PeerCopyError(f"copying from {peer.name} failed: {exc}") from None


def copy_from_peer(
    appliance: Appliance, name: str, model: CatalogModel, quant: Quant, workdir: Path
) -> Path:
    """The ``fleet:NAME`` source: find the peer over mDNS, prove the key, copy the file."""
    quant_name = quant.name
    dest = workdir / quant.file

    async def run() -> None:
        fleet = Fleet(appliance)
        await fleet.start()
        try:
            await _copy(fleet, name, model, quant_name, dest)
        finally:
            await fleet.stop()
            await appliance.zeroconf.close()

    asyncio.run(run())
    return dest
