"""The fleet as this box sees it: peers found over the box's own mDNS (same fleet id in the
record, then a signed challenge), checked every few seconds, and their models offered here."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from appliance import Appliance, Overloaded
from appliance_fleet.auth import HEADER, cert_sha256, fleet_id, proof_ok, sign
from appliance_fleet.remote import PeerChatModel, PeerEmbedder, PeerTranscriber

log = logging.getLogger(__name__)
SERVICE_TYPE = "_ai-appliance._tcp.local."
NAME = "fleet"
HEALTH_S = 10.0
MAX_FAILURES = 3
HELLO = "/appliance/fleet/hello"


@dataclass
class Peer:
    id: str
    name: str
    url: str
    models: dict[str, list[str]] = field(default_factory=dict)
    load: dict[str, int] = field(default_factory=dict)
    last_seen: float = 0.0
    failures: int = 0
    in_flight: int = 0
    cert_sha256: str = ""
    """The TLS certificate its proof was bound to (pinned for every request), "" over HTTP."""

    @property
    def ssl(self) -> aiohttp.Fingerprint | bool:
        return aiohttp.Fingerprint(bytes.fromhex(self.cert_sha256)) if self.cert_sha256 else True

    def note_answer(self) -> None:
        self.failures = 0
        self.last_seen = time.time()

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "models": self.models,
            "load": self.load,
            "last_seen": self.last_seen,
            "failures": self.failures,
            "tls_sha256": self.cert_sha256,
        }


async def certificate_of(url: str) -> str:
    """The sha256 of the certificate an https URL's server presents ("" for http)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or parts.hostname is None:
        return ""
    address = (parts.hostname, parts.port or 443)
    pem = await asyncio.to_thread(ssl.get_server_certificate, address, timeout=5)
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


class Fleet:
    def __init__(self, appliance: Appliance) -> None:
        self.appliance = appliance
        self.key = appliance.settings.fleet_key
        self.id = fleet_id(self.key)
        self.box_id = appliance.id
        self.cert_sha256 = cert_sha256(appliance.settings.tls_cert)
        self.peers: dict[str, Peer] = {}
        self.by_service: dict[str, str] = {}
        self.session: aiohttp.ClientSession = None  # type: ignore[assignment]
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_watch: Any = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.session = aiohttp.ClientSession()
        self._stop_watch = await self.appliance.zeroconf.watch(SERVICE_TYPE, self._changed)
        self._spawn(self._health())

    async def stop(self) -> None:
        if self._stop_watch is not None:
            await self._stop_watch()
        for task in list(self._tasks):
            task.cancel()
        await self.session.close()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _changed(self, service: str, change: Any) -> None:
        if change.name == "Removed":
            peer_id = self.by_service.pop(service, None)
            if peer_id is not None:
                self._drop(peer_id, "said goodbye")
        else:
            self._spawn(self._learn(service))

    async def _learn(self, service: str) -> None:
        with contextlib.suppress(LookupError):
            info = await self.appliance.zeroconf.resolve(SERVICE_TYPE, service)
            txt = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
            if txt.get("fleet") != self.id or txt.get("id") == self.box_id:
                return  # another fleet, no fleet, or this box itself: never a peer
            scheme = "https" if txt.get("tls") == "1" else "http"
            for address in (socket.inet_ntoa(a) for a in info.addresses if len(a) == 4):
                peer = await self.hello(f"{scheme}://{address}:{info.port}")
                if peer is not None:
                    self.by_service[service] = peer.id
                    return

    async def hello(self, url: str) -> Peer | None:
        """Ask a box to prove it holds the key; on success it becomes (or stays) a peer."""
        challenge = secrets.token_hex(16)
        headers = {HEADER: sign(self.key, self.box_id, "GET", HELLO)}
        try:
            seen = await certificate_of(url)  # the hello itself goes only to that certificate
            async with self.session.get(
                f"{url}{HELLO}",
                params={"challenge": challenge},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=5),
                ssl=aiohttp.Fingerprint(bytes.fromhex(seen)) if seen else True,
            ) as response:
                if response.status != 200:
                    return None
                data = await response.json()
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return None
        if not proof_ok(self.key, str(data.get("id")), challenge, str(data.get("proof")), seen):
            log.warning("fleet: %s answered without the key (or through another); not a peer", url)
            return None
        peer = self.peers.get(data["id"]) or Peer(id=data["id"], name=data["name"], url=url)
        peer.models, peer.load, peer.url = data["models"], data["load"], url
        peer.cert_sha256 = seen
        peer.note_answer()
        if peer.id not in self.peers:
            log.info("fleet: %s (%s) joined with %s", peer.name, url, peer.models)
        self.peers[peer.id] = peer
        self.sync_models()
        return peer

    async def _health(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_S)
            for peer in list(self.peers.values()):
                if await self.hello(peer.url) is None:
                    self.failed(peer)

    def failed(self, peer: Peer) -> None:
        peer.failures += 1
        if peer.failures >= MAX_FAILURES:
            self._drop(peer.id, f"did not answer {peer.failures} times")

    def _drop(self, peer_id: str, why: str) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is not None:
            log.warning("fleet: %s left (%s)", peer.name, why)
            self.sync_models()

    def serving(self, model: str) -> list[Peer]:
        return [
            p for p in self.peers.values() if any(model in names for names in p.models.values())
        ]

    def pick(self, model: str) -> Peer:
        """The least-loaded peer serving ``model``; 503 when none does now."""
        live = [p for p in self.serving(model) if p.failures < MAX_FAILURES]
        if not live:
            raise Overloaded(f"no box of the fleet serves {model} now", retry_after=10)
        return min(live, key=lambda p: (p.load.get(model, 0) + p.in_flight, p.failures))

    def local_models(self) -> dict[str, list[str]]:
        """What this box itself serves (never what it borrows from peers)."""
        registry = self.appliance.registry
        return {
            "chat": [n for n in registry.chat.names() if registry.chat.owner(n) != NAME],
            "embeddings": [
                n for n in registry.embedders.names() if registry.embedders.owner(n) != NAME
            ],
            "transcription": [
                n for n in registry.transcribers.names() if registry.transcribers.owner(n) != NAME
            ],
        }

    def sync_models(self) -> None:
        """Offer every model a peer serves and this box does not; withdraw the ones gone."""
        registry = self.appliance.registry
        for kind, group, make in (
            ("chat", registry.chat, PeerChatModel),
            ("embeddings", registry.embedders, PeerEmbedder),
            ("transcription", registry.transcribers, PeerTranscriber),
        ):
            offered = {n for p in self.peers.values() for n in p.models.get(kind, [])}
            for name in offered:
                if name not in group:
                    if kind == "chat":
                        self.appliance.add_chat_model(NAME, make(name, self))
                    else:
                        group.add(name, make(name, self), NAME)
            for name in [n for n in group.names() if group.owner(n) == NAME]:
                if name not in offered:
                    group.remove(name, owner=NAME)
