"""What aiohttp does not bound by itself: how long a client may take to send a request's headers
(a slow client sending a byte a second would otherwise hold its socket forever) and how many
connections one client address may hold. The body's deadline is in ``read_json``/``read_form``.

aiohttp has no hook for either, so the server's protocol is a subclass of aiohttp's
``RequestHandler`` (pinned by the tests in tests/test_slow_clients.py against the aiohttp in use).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)


def _plain_response(status: str, text: str, *headers: str) -> bytes:
    body = text.encode()
    lines = [f"HTTP/1.1 {status}", *headers, "Connection: close", "Content-Type: text/plain"]
    head = "\r\n".join([*lines, f"Content-Length: {len(body)}", "", ""])
    return head.encode() + body


TOO_MANY = _plain_response(
    "503 Service Unavailable", "too many connections from this address\n", "Retry-After: 5"
)
TOO_SLOW = _plain_response("408 Request Timeout", "the request headers came too slowly\n")


class ConnectionGuard:
    def __init__(self, header_timeout_s: float, max_per_address: int) -> None:
        self.header_timeout_s = header_timeout_s
        self.max_per_address = max_per_address
        self.open: Counter[str] = Counter()
        self.refused = 0
        self.cut_off = 0

    def admit(self, address: str) -> bool:
        if self.open[address] >= self.max_per_address:
            self.refused += 1
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


class GuardedRequestHandler(RequestHandler):
    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address = ""
        self._admitted = False
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if peer else ""
        if not self.guard.admit(self._address):
            log.warning("refused a connection from %s: too many open", self._address)
            assert isinstance(transport, asyncio.Transport)
            transport.write(TOO_MANY)
            transport.close()
            return
        self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._stop_deadline()
        self.guard.release(self._address)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        parsed_before = self._request_count
        super().data_received(data)
        if self._request_count != parsed_before:
            self._stop_deadline()  # a request's headers are complete
        elif self._header_deadline is None and not self._request_in_progress and data:
            self._header_deadline = self._loop.call_later(
                self.guard.header_timeout_s, self._headers_too_slow, parsed_before
            )

    def _stop_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self, parsed_before: int) -> None:
        self._header_deadline = None
        if self._request_count != parsed_before or self.transport is None:
            return
        self.guard.cut_off += 1
        log.warning("closed a connection from %s: headers too slow", self._address)
        self.transport.write(TOO_SLOW)
        self.force_close()


class GuardedServer(web.Server):
    guard: ConnectionGuard

    def __call__(self) -> RequestHandler:
        handler = GuardedRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.guard = self.guard
        return handler


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections go through a :class:`ConnectionGuard`."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        server = GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
        server.guard = self.guard
        return server
