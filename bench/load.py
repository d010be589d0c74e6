"""A crowd at the box: 10, 25 and 50 clients at once, each streaming chats from the default model
through the HTTP API (server in its own process, as deployed: 4 slots, a line of 16). Prints,
per crowd: the status histogram (200s answered, 503s refused with Retry-After), p50/p95 time to
first token and total latency of the answered ones, throughput, and the server's peak RSS.
Run: .venv/bin/python -m bench.load
"""

from __future__ import annotations

import asyncio
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import rss_bytes, serve_process

MODEL = "smollm2:135m"
CROWDS = (10, 25, 50)
REQUESTS_EACH = 3
TOKENS = 32


async def one_chat(
    session: aiohttp.ClientSession, url: str, i: int
) -> tuple[int, float | None, float, bool]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Tell me fact number {i} about the sea."}],
        "max_tokens": TOKENS,
        "temperature": 0,
        "stream": True,
    }
    started = time.monotonic()
    first: float | None = None
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        if response.status != 200:
            await response.read()
            retry = bool(response.headers.get("Retry-After"))
            return response.status, None, time.monotonic() - started, retry
        async for line in response.content:
            if (
                first is None
                and line.startswith(b"data: {")
                and json.loads(line[6:])["choices"][0]["delta"].get("content")
            ):
                first = time.monotonic() - started
    return 200, first, time.monotonic() - started, False


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


async def crowd(url: str, pid: int, clients: int) -> dict[str, object]:
    statuses: collections.Counter[int] = collections.Counter()
    firsts: list[float] = []
    totals: list[float] = []
    refusals_with_retry = 0
    peak = rss_bytes(pid)
    stop = asyncio.Event()

    async def watch_memory() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.1)

    async def client(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal refusals_with_retry
        for n in range(REQUESTS_EACH):
            status, first, total, retry = await one_chat(session, url, k * 100 + n)
            statuses[status] += 1
            if status == 200:
                totals.append(total)
                if first is not None:
                    firsts.append(first)
            elif status == 503:
                refusals_with_retry += retry
                await asyncio.sleep(1.0)  # what a polite client does with Retry-After

    watcher = asyncio.create_task(watch_memory())
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(k, session) for k in range(clients)))
    elapsed = time.monotonic() - started
    stop.set()
    await watcher
    return {
        "clients": clients,
        "statuses": dict(sorted(statuses.items())),
        "503 with Retry-After": refusals_with_retry,
        "ttft p50/p95 s": (round(percentile(firsts, 50), 2), round(percentile(firsts, 95), 2)),
        "total p50/p95 s": (round(percentile(totals, 50), 2), round(percentile(totals, 95), 2)),
        "answers/s": round(statuses[200] / elapsed, 2),
        "peak RSS MiB": round(peak / 2**20, 1),
    }


async def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        pid: list[int] = []
        env = {"APPLIANCE_CALIBRATE_AT_START": "false", "APPLIANCE_PARALLEL": "4"}
        async with serve_process(Path(home), "llama", env, pid_out=pid) as url:
            async with aiohttp.ClientSession() as session:
                await one_chat(session, url, 0)  # load the model
            idle_rss = rss_bytes(pid[0])
            print(f"server RSS with the model loaded: {idle_rss / 2**20:.1f} MiB")
            for clients in CROWDS:
                print(json.dumps(await crowd(url, pid[0], clients)))


if __name__ == "__main__":
    asyncio.run(main())
