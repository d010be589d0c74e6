"""Many streams at once: aggregate decode tokens/s through the HTTP API (server in its own
process) at 1, 2, 4 and 8 concurrent streams, beside the engine's own batched ceiling measured in
the same run (llama-cpp-python's low-level API, N sequences in one llama_batch, no server); the
same streams' delivered tokens/s (counted from the requests, so the wait for the first token
counts); four new conversations sent together (first token, delivered tokens/s); and the time to
first token of a request that arrives while four streams decode, over its idle time.
Run: .venv/bin/python -m bench.parallel
With LLAMA_SERVER=/path/to/llama-server (llama.cpp's own server, built from the same llama.cpp as
the wheel), the same figures are measured for it in the same run, with the same slots and threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import appliance_llama.engine  # noqa: F401  (quiets llama.cpp's load chatter)
import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from appliance.models.catalog import load_catalog
from appliance.models.store import ModelStore
from bench.common import MODELS_DIR, free_port, median, serve_process

MODEL = "smollm2:135m"
TOKENS = 128
TOPICS = ["a lighthouse", "a dragon", "the sea", "a city", "a forest", "a robot", "a baker", "rain"]
TEMPLATE = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
SLOTS = 8
ENGINE = "engine (no server)"
ROUNDS = 5


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


async def http_aggregate(session: aiohttp.ClientSession, url: str, n: int) -> tuple[float, float]:
    """(decode tokens/s from the first token to the last, delivered tokens/s from the requests
    to the last token) of n concurrent streams."""
    runs = await asyncio.gather(*(stream(session, url, prompt(i), TOKENS) for i in range(n)))
    return rates(runs)


def rates(runs: list[tuple[float, float, float, int]]) -> tuple[float, float]:
    last = max(last for _, _, last, _ in runs)
    decoded = sum(count - 1 for _, _, _, count in runs)
    delivered = sum(count for _, _, _, count in runs)
    return (
        decoded / (last - min(first for _, first, _, _ in runs)),
        delivered / (last - min(started for started, _, _, _ in runs)),
    )


async def new_conversations(
    session: aiohttp.ClientSession, url: str, round_: int
) -> tuple[float, float]:
    """(median time to first token, delivered tokens/s) of four conversations never seen
    before, sent together; they share only the system prompt of the chat template."""
    questions = [
        f"Write a short story about {TOPICS[i]} in {40 + 4 * round_ + i} words." for i in range(4)
    ]
    runs = await asyncio.gather(*(stream(session, url, q, TOKENS // 2) for q in questions))
    return median([first - started for started, first, _, _ in runs]), rates(runs)[1]


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


@contextlib.asynccontextmanager
async def llama_server(binary: str, path: Path) -> AsyncIterator[str]:
    """llama.cpp's own server with the appliance's slots, pool and threads."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, "-m", str(path), "--port", str(port), "-np", str(SLOTS), "-kvu",
        "-c", str(4096 * SLOTS), "-t", "2", "-tb", "2", "--log-disable",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True)
        ) as session:
            for _ in range(300):  # until it answers a chat (its /health says ok while loading)
                with contextlib.suppress(aiohttp.ClientError, AssertionError):
                    await stream(session, url, "hi", 2)
                    break
                await asyncio.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        await proc.wait()


async def measure(
    servers: dict[str, contextlib.AbstractAsyncContextManager[str]], path: Path
) -> Any:
    """Every figure for the engine and every server, taken in turns (round by round) so that a
    slow spell of the machine weighs on all of them alike."""
    figures: dict[str, dict[str, list[float]]] = {name: {} for name in [ENGINE, *servers]}
    # A new connection per request for every server (llama-server drops kept-alive streams).
    connector = aiohttp.TCPConnector(force_close=True)
    async with contextlib.AsyncExitStack() as stack:
        urls = {name: await stack.enter_async_context(cm) for name, cm in servers.items()}
        session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        for url in urls.values():
            await stream(session, url, prompt(0), 8)  # load the model once
        for round_ in range(ROUNDS):
            # On this loop, not a thread: nothing is in flight meanwhile, and on a thread the
            # ceiling measured lower (5 of 6 pairs, by up to 17 %).
            for n in (1, 2, 4, 8):
                figures[ENGINE].setdefault(str(n), []).append(engine_ceiling(path, n))
            for name, url in urls.items():
                for n in (1, 2, 4, 8):
                    decode, delivered = await http_aggregate(session, url, n)
                    figures[name].setdefault(str(n), []).append(decode)
                    figures[name].setdefault(f"{n} delivered", []).append(delivered)
                first, delivered = await new_conversations(session, url, round_)
                figures[name].setdefault("new first", []).append(first)
                figures[name].setdefault("new delivered", []).append(delivered)
                idle, busy = await late_first_token(session, url)
                figures[name].setdefault("idle", []).append(idle)
                figures[name].setdefault("busy", []).append(busy)
    return figures


def paired(box: dict[str, list[float]], theirs: dict[str, list[float]], key: str) -> float:
    """The median of the rounds' ratios: each pair was measured minutes apart at most."""
    return median([a / b for a, b in zip(box[key], theirs[key], strict=True)])


def scaling_over_engine(server: dict[str, list[float]], engine: dict[str, list[float]]) -> float:
    """The median over rounds of the server's 4/1 over the engine's 4/1 of the same round."""
    return median(
        [
            (s4 / s1) / (e4 / e1)
            for s1, s4, e1, e4 in zip(
                server["1"], server["4"], engine["1"], engine["4"], strict=True
            )
        ]
    )


async def main() -> None:
    catalog = load_catalog()
    path = ModelStore(MODELS_DIR, catalog).verified_path(catalog.get(MODEL))
    peer = os.environ.get("LLAMA_SERVER")
    peer_name = f"llama-server -np {SLOTS} -kvu"
    with tempfile.TemporaryDirectory() as home:
        servers = {
            "appliance HTTP": serve_process(
                Path(home),
                "llama",
                {"APPLIANCE_PARALLEL": str(SLOTS), "APPLIANCE_CALIBRATE_AT_START": "false"},
            )
        }
        if peer:
            servers[peer_name] = llama_server(peer, path)
        rounds = await measure(servers, path)
    columns = {name: {k: median(v) for k, v in f.items()} for name, f in rounds.items()}
    measured = {name: figures for name, figures in columns.items() if name != ENGINE}
    print("aggregate decode tokens/s" + "".join(f"{name:>28}" for name in columns))
    for n in ("1", "2", "4", "8"):
        print(f"  {n} stream(s)            " + "".join(f"{c[n]:28.1f}" for c in columns.values()))
    print("delivered tokens/s (from the requests)" + "".join(f"{name:>28}" for name in measured))
    for n in ("1", "2", "4", "8"):
        print(
            f"  {n} stream(s)                         "
            + "".join(f"{c[n + ' delivered']:28.1f}" for c in measured.values())
        )
    print("four new conversations at once" + "".join(f"{name:>28}" for name in measured))
    print(
        "  first token (ms)              "
        + "".join(f"{c['new first'] * 1000:28.0f}" for c in measured.values())
    )
    print(
        "  delivered tokens/s            "
        + "".join(f"{c['new delivered']:28.1f}" for c in measured.values())
    )
    for name, figures in measured.items():
        print(
            f"{name}: 4/1 {figures['4'] / figures['1']:.2f}, over the engine's 4/1 of the same "
            f"round {scaling_over_engine(rounds[name], rounds[ENGINE]):.2f} (target >= 0.9); "
            "first token idle "
            f"{figures['idle'] * 1000:.0f} ms, while four decode {figures['busy'] * 1000:.0f} "
            f"ms: {figures['busy'] / figures['idle']:.2f}x (target <= 2)"
        )
    if peer:
        box, theirs = rounds["appliance HTTP"], rounds[peer_name]
        print(
            "appliance / llama-server, the median of the rounds' ratios: decode 1 stream "
            f"{paired(box, theirs, '1'):.2f}, 4 streams {paired(box, theirs, '4'):.2f} "
            f"(target > 1 on both); delivered 1 stream {paired(box, theirs, '1 delivered'):.2f}, "
            f"4 streams {paired(box, theirs, '4 delivered'):.2f}; four new conversations: "
            f"first token {paired(box, theirs, 'new first'):.2f}x, delivered "
            f"{paired(box, theirs, 'new delivered'):.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
