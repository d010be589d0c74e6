"""The fleet's cost: decode tokens/s of one stream from box B's model asked of B directly and
asked of box A, which has no model and forwards to B (two `appliance serve` processes on
loopback, found over mDNS with a shared fleet key), in interleaved rounds; printed as a ratio.
(Splitting one model over two boxes with llama.cpp's RPC is not built yet.)
Run: .venv/bin/python -m bench.fleet
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import median, serve_process

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
            aiohttp.ClientSession() as session,
        ):
            for _ in range(120):  # A finds B over mDNS
                async with session.get(a.rstrip("/") + "/v1/models") as r:
                    if any(m["id"] == MODEL for m in (await r.json())["data"]):
                        break
                await asyncio.sleep(0.5)
            await stream_tps(session, b)  # load the model
            local, forwarded = [], []
            for _ in range(ROUNDS):
                local.append(await stream_tps(session, b))
                forwarded.append(await stream_tps(session, a))
    print(f"one stream, {TOKENS} tokens, {ROUNDS} rounds (median tokens/s)")
    print(f"  served locally by B       {median(local):6.1f}")
    print(f"  asked of A, through B     {median(forwarded):6.1f}")
    print(f"  through a peer / local    {median(forwarded) / median(local):6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
