"""Find boxes on the LAN: browse mDNS, then verify each one over HTTP."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from zeroconf.asyncio import AsyncServiceInfo

from appliance.discovery.zeroconf import SERVICE_TYPE, Zeroconf


@dataclass
class FoundBox:
    name: str
    id: str
    addresses: list[str]
    port: int
    version: str = ""
    profile: str = ""
    auth: str = ""
    models: list[str] = field(default_factory=list)
    txt: dict[str, str] = field(default_factory=dict)
    reachable: bool = False
    record: dict[str, Any] | None = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _decode(properties: dict[bytes, bytes | None]) -> dict[str, str]:
    return {
        k.decode(errors="replace"): (v or b"").decode(errors="replace")
        for k, v in properties.items()
    }


def box_from_info(info: AsyncServiceInfo) -> FoundBox:
    txt = _decode(info.properties)
    addresses = [socket.inet_ntoa(a) for a in info.addresses if len(a) == 4]
    return FoundBox(
        name=info.name.removesuffix("." + SERVICE_TYPE),
        id=txt.get("id", ""),
        addresses=addresses,
        port=info.port or 0,
        version=txt.get("version", ""),
        profile=txt.get("profile", ""),
        auth=txt.get("auth", ""),
        models=[m for m in txt.get("models", "").split(",") if m],
        txt=txt,
    )


async def verify(box: FoundBox, session: aiohttp.ClientSession, wait_s: float = 3.0) -> None:
    """Fetch the box's authoritative record; mark it unreachable if no address answers."""
    for address in box.addresses:
        scheme = "https" if box.txt.get("tls") == "1" else "http"
        url = f"{scheme}://{address}:{box.port}/.well-known/appliance.json"
        try:
            # The record is public; a box's self-signed certificate is pinned by its clients, not
            # by discovery, so it is not verified here.
            async with session.get(
                url, timeout=aiohttp.ClientTimeout(total=wait_s), ssl=False
            ) as response:
                if response.status == 200:
                    box.record = await response.json()
                    box.reachable = True
                    box.error = ""
                    return
                box.error = f"{url} answered {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            box.error = f"{url}: {exc.__class__.__name__}"


async def discover(
    listen_s: float = 3.0,
    interfaces: list[str] | None = None,
    check: bool = True,
    zeroconf: Zeroconf | None = None,
) -> list[FoundBox]:
    """Browse for ``listen_s`` seconds; return boxes de-duplicated by id, verified over HTTP.

    A running box passes its own ``appliance.zeroconf``; the command line opens one for itself.
    """
    own = zeroconf is None
    zc = zeroconf or Zeroconf(host="0.0.0.0", interfaces=interfaces)
    try:
        boxes: dict[str, FoundBox] = {}
        for info in await zc.browse(SERVICE_TYPE, listen_s):
            box = box_from_info(info)
            key = box.id or info.name
            if key in boxes:
                boxes[key].addresses = sorted(set(boxes[key].addresses) | set(box.addresses))
            else:
                boxes[key] = box
    finally:
        if own:
            await zc.close()
    if check:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(verify(b, session) for b in boxes.values()))
    return list(boxes.values())
