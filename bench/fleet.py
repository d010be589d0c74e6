"""The fleet's cost: decode tokens/s of one stream from box B's model asked of B directly, asked
of box A, which has no model and forwards to B (two `appliance serve` processes on loopback,
found over mDNS with a shared fleet key), and asked of box H, whose copy of the model is split
over H and an `appliance rpc-worker` (llama.cpp RPC); in interleaved rounds, printed as ratios.
On one machine the head and the worker share its cores, so the split shows RPC's overhead, not
what a second box's memory buys.
Run: .venv/bin/python -m bench.fleet
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from bench.common import free_port, median, serve_process

MODEL = "smollm2:135m"
TOKENS = 128
ROUNDS = 3
KEY = "bench-fleet-key-0123456789abcdef"


async def stream_tps(session: aiohttp.ClientSession, url: str) -> float:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
        "max_tokens": TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    first = last = None
    tokens = 0
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        async for line in response.content:
            if not line.startswith(b"data: {"):
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                tokens = data["usage"]["completion_tokens"]
            if any((c.get("delta") or {}).get("content") for c in data.get("choices") or []):
                first = first or time.monotonic()
                last = time.monotonic()
    assert first is not None and last is not None and tokens > 1, "no tokens streamed"
    return (tokens - 1) / (last - first)


@contextlib.asynccontextmanager
async def rpc_worker() -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", "rpc-worker", "--host", "127.0.0.1",
        "--port", str(port), "--allow", "127.0.0.1", "--threads", "2",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    while b"lending this box" not in await proc.stderr.readline():
        assert proc.returncode is None, "the RPC worker did not start"
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


async def main() -> None:
    env = {
        "APPLIANCE_MDNS": "true",
        "APPLIANCE_FLEET_KEY": KEY,
        "APPLIANCE_CALIBRATE_AT_START": "false",
    }
    with tempfile.TemporaryDirectory() as work:
        async with (
            serve_process(Path(work) / "b", "llama,fleet", env) as b,
            serve_process(Path(work) / "a", "fleet", env) as a,
            rpc_worker() as worker,
            serve_process(
                Path(work) / "h", "llama", {**env, "APPLIANCE_RPC_WORKERS": worker}
            ) as head,
            aiohttp.ClientSession() as session,
        ):
            for _ in range(120):  # A finds B over mDNS
                async with session.get(a.rstrip("/") + "/v1/models") as r:
                    if any(m["id"] == MODEL for m in (await r.json())["data"]):
                        break
                await asyncio.sleep(0.5)
            await stream_tps(session, b)  # load the models
            await stream_tps(session, head)
            async with session.get(head + "/api/ps") as r:
                devices = [m["devices"] for m in (await r.json())["models"]]
            assert devices == [["cpu", f"rpc:{worker}"]], devices
            local, forwarded, split = [], [], []
            for _ in range(ROUNDS):
                local.append(await stream_tps(session, b))
                forwarded.append(await stream_tps(session, a))
                split.append(await stream_tps(session, head))
    print(f"one stream, {TOKENS} tokens, {ROUNDS} rounds (median tokens/s)")
    print(f"  served locally by B       {median(local):6.1f}")
    print(f"  asked of A, through B     {median(forwarded):6.1f}")
    print(f"  split over H and a worker {median(split):6.1f}")
    print(f"  through a peer / local    {median(forwarded) / median(local):6.2f}")
    print(f"  split over RPC / local    {median(split) / median(local):6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
