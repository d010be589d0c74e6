"""Find boxes on the LAN: browse mDNS, then verify each one over HTTP."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from appliance.discovery.mdns import SERVICE_TYPE


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
    listen_s: float = 3.0, interfaces: list[str] | None = None, check: bool = True
) -> list[FoundBox]:
    """Browse for ``listen_s`` seconds; return boxes de-duplicated by id, verified over HTTP."""
    azc = (
        AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        if interfaces
        else AsyncZeroconf(ip_version=IPVersion.V4Only)
    )
    names: set[str] = set()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            names.add(name)
        elif state_change is ServiceStateChange.Removed:
            names.discard(name)

    browser = AsyncServiceBrowser(azc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        await asyncio.sleep(listen_s)
        boxes: dict[str, FoundBox] = {}
        for name in sorted(names):
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(azc.zeroconf, 1500):
                continue
            box = box_from_info(info)
            key = box.id or name
            if key in boxes:
                boxes[key].addresses = sorted(set(boxes[key].addresses) | set(box.addresses))
            else:
                boxes[key] = box
    finally:
        await browser.async_cancel()
        await azc.async_close()
    if check:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(verify(b, session) for b in boxes.values()))
    return list(boxes.values())
