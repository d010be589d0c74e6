"""Advertise the box over mDNS through the Appliance's one Zeroconf, after HTTP listens.

The record is a hint that points to ``/.well-known/appliance.json``; liveness is checked over HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from typing import TYPE_CHECKING

from zeroconf.asyncio import AsyncServiceInfo

from appliance.discovery.zeroconf import SERVICE_TYPE, Zeroconf, advertised_addresses

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger(__name__)

HTTP_TYPE = "_http._tcp.local."
HTTPS_TYPE = "_https._tcp.local."
TXT_LIMIT = 255
ADDRESS_POLL_S = 10.0


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
        "auth": await appliance.auth_mode(),
        "profile": appliance.profile.id,
        "models": models,
    }
    for answer in appliance.plugins.call("mdns_properties", appliance=appliance):
        try:
            extra = dict(answer.value)
        except (TypeError, ValueError):
            log.error("mdns_properties of %s is not a dict; ignored", answer.plugin)
            continue
        for key, value in extra.items():
            props.setdefault(str(key), str(value))
    return fit_txt(props)


class Advertiser:
    """Registers the box's services; re-announces when its addresses change; says goodbye."""

    def __init__(
        self,
        appliance: Appliance,
        host: str,
        port: int,
        tls: bool = False,
        zeroconf: Zeroconf | None = None,
    ) -> None:
        self.appliance = appliance
        self.zeroconf = zeroconf or appliance.zeroconf
        self.tls = tls
        self.host = host
        self.port = port
        self.addresses = advertised_addresses(host)
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
        self.zeroconf.host = self.host
        props = await txt_properties(self.appliance)
        if self.tls:
            props["tls"] = "1"
        wanted = instance_name(self.appliance)
        main = self._build(SERVICE_TYPE, wanted, props)
        await self.zeroconf.register(main)
        self.name = main.name.removesuffix("." + SERVICE_TYPE)
        self.appliance.announced_name = self.name
        web_type = HTTPS_TYPE if self.tls else HTTP_TYPE
        http = self._build(web_type, self.name, {"path": "/", "id": self.appliance.id})
        await self.zeroconf.register(http)
        self.infos = [main, http]
        log.info(
            "mDNS: announced %r on %s port %d%s",
            self.name,
            ",".join(self.addresses),
            self.port,
            "" if self.name == wanted else f" (renamed from {wanted!r}: name taken)",
        )
        self._watch = asyncio.create_task(self._watch_addresses())

    async def _watch_addresses(self) -> None:
        while True:
            await asyncio.sleep(ADDRESS_POLL_S)
            current = advertised_addresses(self.host)
            if current != self.addresses:
                log.info("mDNS: addresses changed %s -> %s; re-announcing", self.addresses, current)
                await self._unregister()
                self.addresses = current
                await self.start()
                return

    async def _unregister(self) -> None:
        for info in self.infos:
            await self.zeroconf.unregister(info)
        self.infos = []

    async def stop(self) -> None:
        """Say goodbye. The Zeroconf stays open for others (the Appliance closes it)."""
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        self._watch = None
        await self._unregister()
