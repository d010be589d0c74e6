"""Decode speed through the HTTP API (streaming) versus llama-cpp-python called directly, on the
same model, prompt and settings, in one run; and time to first token of a second turn versus the
first (prefix reuse). Run: .venv/bin/python -m bench.chat
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp
import llama_cpp

from appliance.models.catalog import load_catalog
from appliance.models.store import ModelStore
from bench.common import MODELS_DIR, median, serve_process

MODEL = "smollm2:135m"
MAX_TOKENS = 128
ROUNDS = 5
PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
BRIEFING = (
    "You are the writing assistant of a small coastal town's library. The library runs a "
    "weekly reading circle for retired fishermen, a homework club for children, and an "
    "archive of local newspapers going back to 1890. Stories you write are read aloud, so "
    "keep sentences short, avoid lists, and prefer concrete details: the smell of tar, the "
    "sound of gulls, the weight of wet rope. Never invent real people's names. "
) * 3


def direct_decode_tps(llm: llama_cpp.Llama) -> float:
    first = last = 0.0
    count = 0
    for chunk in llm.create_chat_completion(
        PROMPT,
        stream=True,
        temperature=0,
        max_tokens=MAX_TOKENS,  # type: ignore[arg-type]
    ):
        if chunk["choices"][0]["delta"].get("content"):  # type: ignore[index]
            now = time.perf_counter()
            first = first or now
            last = now
            count += 1
    return (count - 1) / (last - first)


async def http_stream(
    session: aiohttp.ClientSession, url: str, messages: list[dict[str, str]]
) -> tuple[float, float, str]:
    """Return (decode tokens/s, time to first token in s, text)."""
    body = {
        "model": MODEL,
        "messages": messages,
        "stream": True,
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
    }
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    parts = []
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            content = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if content:
                now = time.perf_counter()
                first = first or now
                last = now
                count += 1
                parts.append(content)
    return (count - 1) / (last - first), first - started, "".join(parts)


async def main() -> None:
    catalog = load_catalog()
    model = catalog.get(MODEL)
    path = ModelStore(MODELS_DIR, catalog).verified_path(model)
    llm = llama_cpp.Llama(str(path), n_ctx=4096, n_threads=2, verbose=False)
    with tempfile.TemporaryDirectory() as home:
        server = serve_process(Path(home), "llama")
        async with server as url, aiohttp.ClientSession() as s:
            await http_stream(s, url, PROMPT)  # load the model once
            direct, http = [], []
            for _ in range(ROUNDS):
                direct.append(direct_decode_tps(llm))
                http.append((await http_stream(s, url, PROMPT))[0])
            ttft_first, ttft_second = [], []
            for i in range(ROUNDS):
                # A distinct start each round, so the first turn shares no cached prefix.
                opening = [
                    {"role": "system", "content": f"Session {i}. " + BRIEFING},
                    {"role": "user", "content": PROMPT[0]["content"]},
                ]
                _, first_ttft, text = await http_stream(s, url, opening)
                follow = [
                    *opening,
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": "Now give it a title."},
                ]
                _, second_ttft, _ = await http_stream(s, url, follow)
                ttft_first.append(first_ttft)
                ttft_second.append(second_ttft)
    llm.close()
    d, h = median(direct), median(http)
    print(f"decode tokens/s  direct llama-cpp-python: {d:7.1f}   HTTP API stream: {h:7.1f}")
    print(f"ratio HTTP / direct: {h / d:.3f}   (target >= 0.95)")
    f, s2 = median(ttft_first), median(ttft_second)
    print(f"time to first token  first turn: {f * 1000:6.1f} ms   second turn: {s2 * 1000:6.1f} ms")
    print(f"ratio second / first turn: {s2 / f:.3f}   (prefix reuse: well below 1 is the goal)")


if __name__ == "__main__":
    asyncio.run(main())
