"""The scheduler driving a batched model: admission by turns, slots, failures, keep-alive."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from appliance import (
    ApplianceError,
    AsyncChatModel,
    BadRequest,
    BatchedChatModel,
    ChatRequest,
    Embedder,
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
    Usage,
    hookimpl,
)
from appliance.capabilities.chat import SamplingOptions
from appliance.scheduler import Scheduler
from appliance.scheduler.batched import BatchWorker, SequenceTicket
from appliance.scheduler.fair import FairQueue
from tests.fixtures import ClientFactory


@dataclass(eq=False)
class Seq:
    tag: str
    length: int
    produced: int = 0
    slot: int | None = None


@dataclass(eq=False)
class Counter(BatchedChatModel):
    """Each sequence counts to its length, one number a step; records every step's batch."""

    n_slots: int = 2
    fail_on_step: int = -1
    delay: float = 0.0
    active: list[Seq] = field(default_factory=list)
    steps: list[list[str]] = field(default_factory=list)
    released: list[tuple[str, bool]] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    info: ModelInfo = field(default_factory=lambda: ModelInfo(name="counter"))
    _loaded: bool = False

    def __post_init__(self) -> None:
        self.gate.set()

    @property
    def slots(self) -> int:
        return self.n_slots

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        self._loaded = True

    def unload(self) -> None:
        self._loaded = False

    def prepare(self, request: GenerationRequest) -> Seq:
        assert isinstance(request, ChatRequest)
        text = str(request.messages[-1]["content"])
        if text == "refuse":
            raise BadRequest("refused before anything started")
        return Seq(text, request.sampling.max_tokens or 3)

    def admit(self, sequence: Seq) -> bool:
        used = {s.slot for s in self.active}
        free = [i for i in range(self.n_slots) if i not in used]
        if not free:
            return False
        sequence.slot = free[0]
        self.active.append(sequence)
        return True

    def step(self, sequences: Sequence[Seq]) -> list[tuple[Any, GenerationChunk | Exception]]:
        self.gate.wait(5)
        time.sleep(self.delay)
        self.steps.append([s.tag for s in sequences])
        if len(self.steps) == self.fail_on_step:
            raise RuntimeError("the engine broke")
        out: list[tuple[Any, GenerationChunk | Exception]] = []
        for seq in sequences:
            seq.produced += 1
            out.append((seq, GenerationChunk(text=f"{seq.tag}{seq.produced} ")))
            if seq.produced >= seq.length:
                out.append(
                    (seq, GenerationChunk(finish_reason="stop", usage=Usage(1, seq.produced)))
                )
        return out

    def release(self, sequence: Seq, cancelled: bool) -> None:
        self.released.append((sequence.tag, cancelled))
        if sequence in self.active:
            self.active.remove(sequence)


def ask(tag: str, n: int = 3) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": tag}], SamplingOptions(max_tokens=n))


async def text_of(scheduler: Scheduler, model: Any, request: ChatRequest, caller: str = "") -> str:
    ticket = await scheduler.generate(model, request, caller=caller)
    return "".join([chunk.text async for chunk in ticket])


async def test_sequences_share_steps_and_each_gets_only_its_own_text() -> None:
    model = Counter(n_slots=2)
    scheduler = Scheduler()
    try:
        a, b = await asyncio.gather(
            text_of(scheduler, model, ask("a", 3)), text_of(scheduler, model, ask("b", 2))
        )
        assert a == "a1 a2 a3 " and b == "b1 b2 "
        assert any(sorted(step) == ["a", "b"] for step in model.steps)
        assert sorted(model.released) == [("a", False), ("b", False)]
    finally:
        scheduler.shutdown()


async def test_callers_take_turns_when_there_are_more_requests_than_slots() -> None:
    model = Counter(n_slots=1)
    scheduler = Scheduler(queue_size=32)
    model.gate.clear()  # hold the first step until everyone is waiting
    try:
        script = [text_of(scheduler, model, ask(f"s{i}", 1), caller="script") for i in range(6)]
        tasks = [asyncio.create_task(c) for c in script]
        await asyncio.sleep(0.2)
        office = asyncio.create_task(text_of(scheduler, model, ask("office", 1), caller="alice"))
        await asyncio.sleep(0.2)
        model.gate.set()
        await asyncio.gather(*tasks, office)
        order = [step[0] for step in model.steps]
        # The script's first request was already running; alice's comes right after its second.
        assert order.index("office") <= 2, order
    finally:
        scheduler.shutdown()


async def test_refusal_comes_before_the_stream_and_a_full_line_is_503() -> None:
    model = Counter(n_slots=1, delay=0.05)
    scheduler = Scheduler(queue_size=1)
    try:
        with pytest.raises(BadRequest):
            await scheduler.generate(model, ask("refuse"))
        first = await scheduler.generate(model, ask("one", 8))
        await asyncio.sleep(0.1)  # admitted; the line is empty again
        second = await scheduler.generate(model, ask("two", 2))
        from appliance.errors import Overloaded

        with pytest.raises(Overloaded) as refused:
            await scheduler.generate(model, ask("three", 2))
        assert refused.value.headers["Retry-After"]
        assert "".join([c.text async for c in first]) == "".join(f"one{i} " for i in range(1, 9))
        assert "".join([c.text async for c in second]) == "two1 two2 "
        status = scheduler.usage()[0]
        assert status["slots"] == 1 and status["slots_busy"] == 0 and status["queued"] == 0
    finally:
        scheduler.shutdown()


async def test_a_cancelled_sequence_frees_its_slot_and_the_others_finish() -> None:
    model = Counter(n_slots=2)
    scheduler = Scheduler()
    try:
        long = await scheduler.generate(model, ask("long", 10_000))
        short = await scheduler.generate(model, ask("short", 5))
        first = await long.__anext__()
        assert first.text.startswith("long")
        long.cancel()
        assert "".join([c.text async for c in short]) == "short1 short2 short3 short4 short5 "
        for _ in range(50):
            if ("long", True) in model.released:
                break
            await asyncio.sleep(0.02)
        assert ("long", True) in model.released
        assert len(model.steps) < 100
    finally:
        scheduler.shutdown()


async def test_a_failing_step_fails_its_requests_clearly_and_the_worker_carries_on() -> None:
    model = Counter(n_slots=2, fail_on_step=2)
    scheduler = Scheduler()
    try:
        with pytest.raises(Exception, match="failed while answering"):
            await text_of(scheduler, model, ask("x", 5))
        assert await text_of(scheduler, model, ask("y", 2)) == "y1 y2 "
    finally:
        scheduler.shutdown()


async def test_keep_alive_forever_or_huge_never_kills_the_worker() -> None:
    model = Counter(n_slots=1)
    scheduler = Scheduler(keep_alive_s=300)
    try:
        for keep in (1e30, float("inf"), -1):
            ticket = await scheduler.generate(model, ask("k", 1), keep_alive=keep)
            assert "".join([c.text async for c in ticket]) == "k1 "
        await asyncio.sleep(0.1)
        assert model.loaded
        assert await text_of(scheduler, model, ask("after", 1)) == "after1 "
    finally:
        scheduler.shutdown()


@dataclass(eq=False)
class AsideCounter(Counter):
    """A Counter whose requests may be prepared beside a running step, and that records the
    interruptions asked of it (it ends the held step when asked)."""

    prepare_delay: float = 0.0
    prepared_while_stepping: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    unloaded_during_prepare: bool = False
    stepping: threading.Event = field(default_factory=threading.Event)

    prepares_while_stepping = True

    def prepare(self, request: GenerationRequest) -> Seq:
        sequence = super().prepare(request)
        time.sleep(self.prepare_delay)
        if not self._loaded:
            self.unloaded_during_prepare = True
        if self.stepping.is_set():
            self.prepared_while_stepping.append(sequence.tag)
        return sequence

    def step(self, sequences: Sequence[Seq]) -> list[tuple[Any, GenerationChunk | Exception]]:
        self.stepping.set()
        try:
            return super().step(sequences)
        finally:
            self.stepping.clear()

    def interrupt(self, sequence: Any) -> bool:
        self.interrupted.append(sequence.tag)
        self.gate.set()
        return True


async def test_a_new_request_is_prepared_beside_the_running_step_and_may_cut_it_short() -> None:
    model = AsideCounter(n_slots=2)
    scheduler = Scheduler()
    try:
        model.gate.clear()  # a step is held until the model is asked to cut it short
        first = await scheduler.generate(model, ask("a", 4))
        await asyncio.sleep(0.1)
        assert model.stepping.is_set()
        second = await asyncio.wait_for(scheduler.generate(model, ask("b", 2)), 3)
        assert model.prepared_while_stepping == ["b"]
        assert model.interrupted == ["b"], "a prepared request with a free slot asks for its turn"
        assert "".join([c.text async for c in second]) == "b1 b2 "
        assert "".join([c.text async for c in first]) == "a1 a2 a3 a4 "
    finally:
        scheduler.shutdown()


async def test_no_interruption_without_a_free_slot() -> None:
    model = AsideCounter(n_slots=1, delay=0.05)
    scheduler = Scheduler()
    try:
        first = await scheduler.generate(model, ask("a", 6))
        await first.__anext__()
        second = await scheduler.generate(model, ask("b", 1))
        assert model.interrupted == []
        assert "".join([c.text async for c in second]) == "b1 "
        assert "".join([c.text async for c in first]) == "a2 a3 a4 a5 a6 "
    finally:
        scheduler.shutdown()


async def test_the_keep_alive_does_not_unload_a_model_while_a_request_is_prepared() -> None:
    model = AsideCounter(n_slots=1, prepare_delay=0.4)
    scheduler = Scheduler(keep_alive_s=0.05)
    try:
        model.prepare_delay = 0.0
        assert await text_of(scheduler, model, ask("warm", 1)) == "warm1 "
        model.prepare_delay = 0.4  # longer than the keep-alive left
        assert await text_of(scheduler, model, ask("slow", 2)) == "slow1 slow2 "
        assert not model.unloaded_during_prepare
        for _ in range(50):  # and the keep-alive still ends it afterwards
            if not model.loaded:
                break
            await asyncio.sleep(0.02)
        assert not model.loaded
    finally:
        scheduler.shutdown()


async def test_a_stopped_worker_refuses_new_requests_clearly() -> None:
    model = AsideCounter(n_slots=1)
    scheduler = Scheduler()
    assert await text_of(scheduler, model, ask("before", 1)) == "before1 "
    worker = scheduler.worker(model)
    assert isinstance(worker, BatchWorker)
    scheduler.shutdown()
    late = SequenceTicket(loop=asyncio.get_running_loop(), request=ask("after", 1))
    answered: list[BaseException | None] = []
    with pytest.raises(ApplianceError) as refused:  # rather than a request nobody answers
        worker.submit(late, answered.append)
    assert refused.value.status == 503 and "shutting down" in refused.value.message


def test_fair_queue_takes_callers_in_turn() -> None:
    line: FairQueue[str] = FairQueue()
    for item in ("a1", "a2", "a3"):
        line.push("a", item)
    line.push("b", "b1")
    line.push("c", "c1")
    line.push("b", "b2")
    assert [line.pop() for _ in range(len(line))] == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert line.pop() is None


class Remote(AsyncChatModel):
    """A model on the event loop (as a peer box's would be)."""

    info = ModelInfo(name="remote")

    async def generate(self, request: GenerationRequest) -> Any:
        for word in ("from", "the", "loop"):
            await asyncio.sleep(0)
            yield GenerationChunk(text=word + " ")
        yield GenerationChunk(finish_reason="stop", usage=Usage(1, 3))


class Plugin:
    def __init__(self, *models: Any) -> None:
        self.models = models

    @hookimpl
    def register_chat_models(self, register: Any) -> None:
        for model in self.models:
            register(model)


async def test_batched_and_async_models_through_both_apis(make_client: ClientFactory) -> None:
    client = await make_client(extra_plugins=(("models", Plugin(Counter(n_slots=2), Remote())),))
    body = {"model": "counter", "messages": [{"role": "user", "content": "z"}], "max_tokens": 2}
    whole = await (await client.post("/v1/chat/completions", json=body)).json()
    assert whole["choices"][0]["message"]["content"] == "z1 z2 "
    refused = await client.post(
        "/v1/chat/completions",
        json={**body, "stream": True, "messages": [{"role": "user", "content": "refuse"}]},
    )
    assert refused.status == 400 and "refused" in (await refused.json())["error"]["message"]
    lines = await (await client.post("/api/chat", json={**body, "model": "remote"})).text()
    parts = [json.loads(line) for line in lines.splitlines()]
    assert "".join(p["message"]["content"] for p in parts) == "from the loop "
    ps = await (await client.get("/api/ps")).json()
    counter = next(m for m in ps["models"] if m["name"].startswith("counter"))
    assert counter["slots"] == 2 and counter["slots_busy"] == 0


async def test_keep_alive_cannot_stop_a_model_for_everyone(make_client: ClientFactory) -> None:
    client = await make_client(extra_plugins=(("models", Plugin(Counter(n_slots=2))),))
    body = {"model": "counter", "messages": [{"role": "user", "content": "q"}], "stream": False}
    for keep_alive in (1e30, -1, "1000000h"):
        response = await client.post("/api/chat", json={**body, "keep_alive": keep_alive})
        assert response.status == 200, await response.text()
    ps = await (await client.get("/api/ps")).json()
    assert ps["models"][0]["expires_at"].startswith("9999")
    for raw in (
        '{"model": "counter", "keep_alive": NaN}',
        '{"model": "counter", "keep_alive": Infinity}',
    ):
        refused = await client.post(
            "/api/chat", data=raw, headers={"Content-Type": "application/json"}
        )
        assert refused.status == 400
    again = await client.post("/api/chat", json=body)
    assert again.status == 200
    assert (await again.json())["message"]["content"] == "q1 q2 q3 "


class CountingEmbedder(Embedder):
    """Records each embed call's texts; the first call is slow so others queue behind it."""

    info = ModelInfo(name="counting-embed")

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> EmbeddingResult:
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            time.sleep(0.3)
        return EmbeddingResult(
            vectors=[[float(len(t))] for t in texts],
            prompt_tokens=len(texts),
            token_counts=[1] * len(texts),
        )


async def test_embedding_requests_waiting_together_share_one_call() -> None:
    embedder = CountingEmbedder()
    scheduler = Scheduler()
    try:
        first = asyncio.create_task(scheduler.embed(embedder, ["a"]))
        await asyncio.sleep(0.1)  # the first call is running
        rest = [scheduler.embed(embedder, ["b" * i, "c"]) for i in range(1, 5)]
        results = await asyncio.gather(first, *rest)
        assert len(embedder.calls) == 2, embedder.calls
        assert len(embedder.calls[1]) == 8
        for i, result in enumerate(results[1:], start=1):
            assert result.vectors == [[float(i)], [1.0]] and result.prompt_tokens == 2
    finally:
        scheduler.shutdown()
