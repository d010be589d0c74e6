"""Many streams at once: aggregate decode tokens/s through the HTTP API (server in its own
process) at 1, 2, 4 and 8 concurrent streams, beside the engine's own batched ceiling measured in
the same run (llama-cpp-python's low-level API, N sequences in one llama_batch, no server); and
the time to first token of a request that arrives while four streams decode, over its idle time.
Run: .venv/bin/python -m bench.parallel
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp
import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from appliance.models.catalog import load_catalog
from appliance.models.store import ModelStore
from bench.common import MODELS_DIR, median, serve_process

MODEL = "smollm2:135m"
TOKENS = 128
TOPICS = ["a lighthouse", "a dragon", "the sea", "a city", "a forest", "a robot", "a baker", "rain"]
TEMPLATE = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
# llama.cpp's own llama-server -np 4 -kvu -t 2 on this model (../shared/REFERENCE.md §9, measured
# on a faster machine of this kind): the yardstick's 4/1 ratio.
LLAMA_SERVER_1, LLAMA_SERVER_4 = 88.6, 153.0


def prompt(i: int) -> str:
    return f"Write a long story about {TOPICS[i % len(TOPICS)]}."


def engine_ceiling(path: Path, n: int) -> float:
    """Greedy decode of n sequences, one llama_batch a step: aggregate decode tokens/s."""
    model = internals.LlamaModel(
        path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=False
    )
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = 1024 * n, 512, 512
    params.n_seq_max, params.kv_unified = n, True
    params.n_threads = params.n_threads_batch = 2
    context = internals.LlamaContext(model=model, params=params, verbose=False)
    holder = internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
    batch, vocab = holder.batch, model.n_vocab()

    def put(k: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, pos, 1
        batch.seq_id[k][0], batch.logits[k] = seq, logits

    def argmax(row: int) -> int:
        logits = llama_cpp.llama_get_logits_ith(context.ctx, row)
        return int(np.ctypeslib.as_array(logits, shape=(vocab,)).argmax())

    last, pos = [], []
    for seq in range(n):
        tokens = model.tokenize(TEMPLATE.format(prompt(seq)).encode(), True, True)
        for i, token in enumerate(tokens):
            put(i, token, i, seq, i == len(tokens) - 1)
        batch.n_tokens = len(tokens)
        assert llama_cpp.llama_decode(context.ctx, batch) == 0
        last.append(argmax(len(tokens) - 1))
        pos.append(len(tokens))
    started = time.perf_counter()
    for _ in range(TOKENS):
        for seq in range(n):
            put(seq, last[seq], pos[seq], seq, True)
            pos[seq] += 1
        batch.n_tokens = n
        assert llama_cpp.llama_decode(context.ctx, batch) == 0
        last = [argmax(seq) for seq in range(n)]
    elapsed = time.perf_counter() - started
    holder.close()
    context.close()
    model.close()
    return n * TOKENS / elapsed


async def stream(
    session: aiohttp.ClientSession, url: str, content: str, max_tokens: int
) -> tuple[float, float, float, int]:
    """(request start, first token, last token, tokens) of one streamed chat."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "stream": True,
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        assert response.status == 200, await response.text()
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
                count += 1
    return started, first, last, count


async def http_aggregate(session: aiohttp.ClientSession, url: str, n: int) -> float:
    runs = await asyncio.gather(*(stream(session, url, prompt(i), TOKENS) for i in range(n)))
    tokens = sum(count - 1 for _, _, _, count in runs)
    window = max(last for _, _, last, _ in runs) - min(first for _, first, _, _ in runs)
    return tokens / window


async def late_first_token(session: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    """(idle, while four decode) time to first token of the same short request."""
    question = "Which city is the capital of France?"
    idle = []
    for _ in range(3):
        started, first, _, _ = await stream(session, url, question, 8)
        idle.append(first - started)
    busy = []
    for _ in range(3):
        readers = [asyncio.create_task(stream(session, url, prompt(i), 256)) for i in range(4)]
        await asyncio.sleep(1.0)
        started, first, _, _ = await stream(session, url, question, 8)
        busy.append(first - started)
        await asyncio.gather(*readers)
    return median(idle), median(busy)


async def main() -> None:
    catalog = load_catalog()
    path = ModelStore(MODELS_DIR, catalog).verified_path(catalog.get(MODEL))
    ceiling = {n: engine_ceiling(path, n) for n in (1, 2, 4, 8)}
    with tempfile.TemporaryDirectory() as home:
        server = serve_process(Path(home), "llama", {"APPLIANCE_PARALLEL": "8"})
        async with server as url, aiohttp.ClientSession() as session:
            await stream(session, url, prompt(0), 8)  # load the model once
            through = {
                n: median([await http_aggregate(session, url, n) for _ in range(2)])
                for n in (1, 2, 4, 8)
            }
            idle, busy = await late_first_token(session, url)
    print("aggregate decode tokens/s    engine (no server)    HTTP API")
    for n in (1, 2, 4, 8):
        print(
            f"  {n} stream{'s' if n > 1 else ' '}                  {ceiling[n]:8.1f}        "
            f"{through[n]:8.1f}"
        )
    engine_ratio = ceiling[4] / ceiling[1]
    http_ratio = through[4] / through[1]
    print(
        f"4/1 ratio: engine {engine_ratio:.2f}, HTTP {http_ratio:.2f}, "
        f"HTTP/engine {http_ratio / engine_ratio:.2f} (target >= 0.9); "
        f"llama-server -np 4 reference {LLAMA_SERVER_4 / LLAMA_SERVER_1:.2f}"
    )
    print(
        f"first token: idle {idle * 1000:.0f} ms, while four decode {busy * 1000:.0f} ms, "
        f"ratio {busy / idle:.2f} (target <= 2)"
    )


if __name__ == "__main__":
    asyncio.run(main())
