"""`appliance rpc-worker`: lend this box's memory and compute to a head box over llama.cpp's RPC.

llama.cpp's RPC server has no authentication (its authors call it unsafe on an open network), so
it listens on this box's loopback only, on a port of its own choosing, and a small forwarder
listens on HOST:PORT and passes on connections from the allowed addresses alone; every other
connection is closed before a byte of it reaches ggml.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterable

from appliance_llama import rpc

log = logging.getLogger(__name__)
CHUNK = 1 << 20


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_allowed(values: Iterable[str]) -> frozenset[Address]:
    allowed: set[Address] = set()
    for value in values:
        for part in value.split(","):
            if part.strip():
                allowed.add(ipaddress.ip_address(part.strip()))
    if not allowed:
        raise ValueError("--allow needs at least one address (the head box's)")
    return frozenset(allowed)


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class Forwarder:
    """Accepts connections on ``host:port`` from ``allowed`` only and joins each to ``target``."""

    def __init__(
        self,
        host: str,
        port: int,
        allowed: frozenset[Address],
        target: tuple[str, int],
    ) -> None:
        self.host, self.port, self.allowed, self.target = host, port, allowed, target
        self.refused = 0

    def is_allowed(self, address: str) -> bool:
        peer = ipaddress.ip_address(address.split("%")[0])
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped:
            peer = peer.ipv4_mapped
        return peer in self.allowed

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")[0]
        if not self.is_allowed(address):
            self.refused += 1
            log.warning("rpc-worker: refused %s (not in --allow)", address)
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError as exc:
            log.error("rpc-worker: llama.cpp's RPC server is not answering: %s", exc)
            writer.close()
            return
        log.info("rpc-worker: %s connected", address)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        log.info("rpc-worker: %s disconnected", address)

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        server = await asyncio.start_server(self._handle, self.host, self.port)
        async with server:
            if ready is not None:
                ready.set()
            await server.serve_forever()


def _wait_until_up(endpoint: str, thread: threading.Thread, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            rpc.probe(endpoint, timeout_s=1.0)
            return
        except rpc.RpcUnavailable:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run_worker(host: str, port: int, allowed: Iterable[str], n_threads: int) -> None:
    """Start ggml's RPC server on loopback and the forwarder in front of it; runs until killed."""
    allow = parse_allowed(allowed)
    if not rpc.available():
        raise rpc.RpcUnavailable("this build of llama.cpp has no RPC backend")
    inner = ("127.0.0.1", _free_loopback_port())
    endpoint = f"{inner[0]}:{inner[1]}"
    thread = threading.Thread(
        target=rpc.serve_forever, args=(endpoint, n_threads), name="rpc-server", daemon=True
    )
    thread.start()
    _wait_until_up(endpoint, thread)
    log.info(
        "rpc-worker: lending this box on %s:%d to %s (llama.cpp RPC on %s)",
        host,
        port,
        ", ".join(sorted(map(str, allow))),
        endpoint,
    )
    asyncio.run(Forwarder(host, port, allow, inner).serve())
