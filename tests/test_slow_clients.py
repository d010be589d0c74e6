"""Slow and greedy clients against the server as `appliance serve` runs it: headers that trickle in
are cut off with 408, a body that trickles in gets 408, one address cannot hold more than its
share of connections (503 + Retry-After), and well-behaved clients are served throughout."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from appliance.app import create_app
from appliance.cli.serve import make_runner
from tests.fixtures import make_settings
from tests.test_tls import free_port

LIMIT = 3


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[int]:
    settings = make_settings(
        tmp_path / "home",
        header_timeout_s=1.0,
        body_timeout_s=1.5,
        max_connections_per_address=LIMIT,
    )
    runner = make_runner(create_app(settings), settings)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def read_all(reader: asyncio.StreamReader, within_s: float) -> bytes:
    """What the server sent before it closed (a reset after our late writes included)."""
    received = bytearray()
    async with asyncio.timeout(within_s):
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(4096):
                received.extend(chunk)
    return bytes(received)


async def healthy(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/appliance/health"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status == 200


async def test_headers_sent_a_byte_at_a_time_are_cut_off(box: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", box)
    started = time.monotonic()

    async def trickle() -> None:
        for byte in b"GET /appliance/health HTTP/1.1\r\nHost: box\r\nX-Slow: " + b"a" * 100:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.2)

    dripping = asyncio.create_task(trickle())
    assert await healthy(box), "a normal client waits behind nobody"
    answer = await read_all(reader, 5)
    dripping.cancel()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < 3
    writer.close()


async def test_a_keep_alive_connection_gets_the_same_deadline_for_its_next_request(
    box: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", box)
    writer.write(b"GET /appliance/health HTTP/1.1\r\nHost: box\r\n\r\n")
    first = await reader.readuntil(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    length = int(
        next(h for h in first.split(b"\r\n") if h.lower().startswith(b"content-length")).split(
            b":"
        )[1]
    )
    await reader.readexactly(length)
    writer.write(b"GET /appl")
    await writer.drain()
    with contextlib.suppress(ConnectionError):
        for _ in range(3):
            await asyncio.sleep(0.6)
            writer.write(b"i")
    answer = await read_all(reader, 5)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    writer.close()


async def test_a_body_that_trickles_in_gets_408(box: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", box)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: box\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200\r\n\r\n{"
    )
    started = time.monotonic()

    async def trickle() -> None:
        while True:
            await asyncio.sleep(0.3)
            writer.write(b" ")

    dripping = asyncio.create_task(trickle())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    dripping.cancel()
    assert head.startswith(b"HTTP/1.1 408"), head
    assert 1.4 < time.monotonic() - started < 4
    writer.close()


async def test_one_address_holds_at_most_its_share_of_connections(box: int) -> None:
    held = [await asyncio.open_connection("127.0.0.1", box) for _ in range(LIMIT)]
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", box)
    refused = await read_all(reader, 5)
    assert refused.startswith(b"HTTP/1.1 503") and b"Retry-After: 5" in refused
    writer.close()
    for _, w in held:
        w.close()
        await w.wait_closed()
    await asyncio.sleep(0.2)
    assert await healthy(box), "closed connections give their places back"
