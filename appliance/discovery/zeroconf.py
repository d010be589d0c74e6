"""The box's one AsyncZeroconf. The advertiser registers through it and plugins browse with it
(``appliance.zeroconf``); nobody else opens a socket on port 5353."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import ifaddr
from zeroconf import IPVersion, ServiceStateChange
from zeroconf import Zeroconf as SyncZeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_ai-appliance._tcp.local."
ChangeHandler = Callable[[str, ServiceStateChange], None]


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


class Zeroconf:
    """Opened on first use on the interfaces of ``host`` (or those given); reopened when they
    change, with every watcher carried over."""

    def __init__(self, host: str = "", interfaces: list[str] | None = None) -> None:
        self.host = host
        self.fixed_interfaces = interfaces
        self.interfaces: list[str] = []
        self._azc: AsyncZeroconf | None = None
        self._watchers: dict[int, tuple[str, ChangeHandler, AsyncServiceBrowser | None]] = {}
        self._next_watch = 0
        self._lock = asyncio.Lock()

    def wanted_interfaces(self) -> list[str]:
        return self.fixed_interfaces or advertised_addresses(self.host)

    @property
    def is_open(self) -> bool:
        return self._azc is not None

    async def opened(self) -> AsyncZeroconf:
        """The AsyncZeroconf, opened (or reopened on new interfaces) as needed."""
        async with self._lock:
            wanted = self.wanted_interfaces()
            if self._azc is not None and wanted == self.interfaces:
                return self._azc
            await self._close_locked()
            self.interfaces = wanted
            self._azc = AsyncZeroconf(interfaces=wanted, ip_version=IPVersion.V4Only)
            for key, (service_type, handler, _) in list(self._watchers.items()):
                self._watchers[key] = (service_type, handler, self._browser(service_type, handler))
            return self._azc

    def _browser(self, service_type: str, handler: ChangeHandler) -> AsyncServiceBrowser:
        assert self._azc is not None

        def on_change(
            zeroconf: SyncZeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            try:
                handler(name, state_change)
            except Exception:
                log.exception("an mDNS watcher of %s raised", service_type)

        return AsyncServiceBrowser(self._azc.zeroconf, service_type, handlers=[on_change])

    async def watch(
        self, service_type: str, handler: ChangeHandler
    ) -> Callable[[], Awaitable[None]]:
        """Call ``handler(name, change)`` as services of ``service_type`` come and go; returns
        a function that stops watching."""
        await self.opened()
        key = self._next_watch
        self._next_watch += 1
        self._watchers[key] = (service_type, handler, self._browser(service_type, handler))

        async def stop() -> None:
            entry = self._watchers.pop(key, None)
            if entry is not None and entry[2] is not None:
                await entry[2].async_cancel()

        return stop

    async def resolve(self, service_type: str, name: str, wait_ms: int = 1500) -> AsyncServiceInfo:
        """A service's record (addresses, port, TXT); raises LookupError if it does not answer."""
        azc = await self.opened()
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(azc.zeroconf, wait_ms):
            raise LookupError(f"{name} did not answer")
        return info

    async def browse(
        self, service_type: str = SERVICE_TYPE, listen_s: float = 3.0
    ) -> list[AsyncServiceInfo]:
        """Every service of ``service_type`` seen within ``listen_s`` seconds, resolved."""
        names: set[str] = set()

        def seen(name: str, change: ServiceStateChange) -> None:
            if change is ServiceStateChange.Removed:
                names.discard(name)
            else:
                names.add(name)

        stop = await self.watch(service_type, seen)
        try:
            await asyncio.sleep(listen_s)
        finally:
            await stop()
        found = []
        for name in sorted(names):
            with contextlib.suppress(LookupError):
                found.append(await self.resolve(service_type, name))
        return found

    async def register(self, info: AsyncServiceInfo) -> None:
        azc = await self.opened()
        await (await azc.async_register_service(info, allow_name_change=True))

    async def unregister(self, info: AsyncServiceInfo) -> None:
        if self._azc is not None:
            with contextlib.suppress(Exception):
                await (await self._azc.async_unregister_service(info))

    async def close(self) -> None:
        async with self._lock:
            await self._close_locked()
            self._watchers = {k: (t, h, None) for k, (t, h, _) in self._watchers.items()}

    async def _close_locked(self) -> None:
        if self._azc is None:
            return
        for _, _, browser in self._watchers.values():
            if browser is not None:
                with contextlib.suppress(Exception):
                    await browser.async_cancel()
        await self._azc.async_close()
        self._azc = None
