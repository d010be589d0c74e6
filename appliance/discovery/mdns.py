"""Advertise the box over mDNS: one AsyncZeroconf, owned by the core, registered after HTTP listens.

The record is a hint that points to ``/.well-known/appliance.json``; liveness is checked over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

import ifaddr
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger(__name__)

SERVICE_TYPE = "_ai-appliance._tcp.local."
HTTP_TYPE = "_http._tcp.local."
HTTPS_TYPE = "_https._tcp.local."
TXT_LIMIT = 255
ADDRESS_POLL_S = 10.0


def local_ipv4_addresses() -> list[str]:
    """Every IPv4 address of this host's interfaces (loopback excluded), from the kernel."""
    addresses = {
        ip.ip
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and not ip.ip.startswith("127.")
    }
    return sorted(addresses)


def advertised_addresses(host: str) -> list[str]:
    """The addresses to announce: the bound one, or every interface's for a wildcard bind."""
    if host in ("0.0.0.0", "", "::"):
        return local_ipv4_addresses() or ["127.0.0.1"]
    if host == "localhost":
        return ["127.0.0.1"]
    return [host]


def fit_txt(properties: dict[str, str]) -> dict[str, str]:
    """Drop or shorten entries so each ``key=value`` fits in 255 bytes."""
    fitted: dict[str, str] = {}
    for key, value in properties.items():
        room = TXT_LIMIT - len(key.encode()) - 1
        if room <= 0:
            log.warning("mDNS TXT key %r is too long; dropped", key)
            continue
        data = value.encode()
        if len(data) > room:
            data = data[:room]
            if key == "models":
                data = data[: data.rfind(b",")] if b"," in data else data
            value = data.decode(errors="ignore")
        fitted[key] = value
    return fitted


def host_label(name: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return (label or "appliance")[:50]


def instance_name(appliance: Appliance) -> str:
    return appliance.settings.instance_name or f"Appliance {appliance.id[:6]}"


async def txt_properties(appliance: Appliance) -> dict[str, str]:
    from appliance.http.admin import auth_mode

    models = ",".join(
        [
            *appliance.registry.chat.names(),
            *appliance.registry.embedders.names(),
            *appliance.registry.transcribers.names(),
        ]
    )
    props = {
        "id": appliance.id,
        "version": appliance.version,
        "api": "/v1",
        "ollama": "/api",
        "auth": await auth_mode(appliance),
        "profile": appliance.profile.id,
        "models": models,
    }
    for _, extra in appliance.plugins.call_each(
        "mdns_properties", unregister_on_error=False, appliance=appliance
    ):
        for key, value in dict(extra).items():
            props.setdefault(str(key), str(value))
    return fit_txt(props)


class Advertiser:
    """Registers the box's services; re-announces when its addresses change; says goodbye."""

    def __init__(self, appliance: Appliance, host: str, port: int, tls: bool = False) -> None:
        self.appliance = appliance
        self.tls = tls
        self.host = host
        self.port = port
        self.addresses = advertised_addresses(host)
        self.zc: AsyncZeroconf | None = None
        self.infos: list[AsyncServiceInfo] = []
        self._watch: asyncio.Task[None] | None = None
        self.name = ""

    def _build(self, service_type: str, name: str, props: dict[str, str]) -> AsyncServiceInfo:
        server = f"{host_label(name)}-{self.appliance.id[:6]}.local."
        return AsyncServiceInfo(
            service_type,
            f"{name}.{service_type}",
            port=self.port,
            properties=props,
            addresses=[socket.inet_aton(a) for a in self.addresses],
            server=server,
        )

    async def start(self) -> None:
        interfaces: Iterable[str] = self.addresses
        self.zc = AsyncZeroconf(interfaces=list(interfaces), ip_version=IPVersion.V4Only)
        props = await txt_properties(self.appliance)
        if self.tls:
            props["tls"] = "1"
        wanted = instance_name(self.appliance)
        main = self._build(SERVICE_TYPE, wanted, props)
        await self._register(main)
        self.name = main.name.removesuffix("." + SERVICE_TYPE)
        self.appliance.announced_name = self.name
        web_type = HTTPS_TYPE if self.tls else HTTP_TYPE
        http = self._build(web_type, self.name, {"path": "/", "id": self.appliance.id})
        await self._register(http)
        self.infos = [main, http]
        log.info(
            "mDNS: announced %r on %s port %d%s",
            self.name,
            ",".join(self.addresses),
            self.port,
            "" if self.name == wanted else f" (renamed from {wanted!r}: name taken)",
        )
        self._watch = asyncio.create_task(self._watch_addresses())

    async def _register(self, info: AsyncServiceInfo) -> None:
        assert self.zc is not None
        await (await self.zc.async_register_service(info, allow_name_change=True))

    async def _watch_addresses(self) -> None:
        while True:
            await asyncio.sleep(ADDRESS_POLL_S)
            current = advertised_addresses(self.host)
            if current != self.addresses and self.zc is not None:
                log.info("mDNS: addresses changed %s -> %s; re-announcing", self.addresses, current)
                await self.stop()
                self.addresses = current
                await self.start()
                return

    async def stop(self) -> None:
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        self._watch = None
        if self.zc is None:
            return
        for info in self.infos:
            with contextlib.suppress(Exception):
                await (await self.zc.async_unregister_service(info))
        await self.zc.async_close()
        self.zc = None
        self.infos = []
