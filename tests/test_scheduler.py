from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

from appliance import ChatModel, ChatRequest, GenerationChunk, ModelInfo, Usage, hookimpl
from appliance.keys import APPLIANCE
from appliance.scheduler import Scheduler
from tests.fixtures import ClientFactory


class SlowModel(ChatModel):
    """Yields a token every ``delay`` seconds, up to ``limit``; records what happened."""

    info = ModelInfo(name="slow")

    def __init__(self, delay: float = 0.05, limit: int = 200) -> None:
        self.delay = delay
        self.limit = limit
        self.produced = 0
        self.cancelled = threading.Event()
        self.loads = 0
        self.unloads = 0
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        self.loads += 1
        self._loaded = True

    def unload(self) -> None:
        self.unloads += 1
        self._loaded = False

    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        try:
            for _ in range(self.limit):
                if cancel.is_set():
                    return
                time.sleep(self.delay)
                self.produced += 1
                yield GenerationChunk(text="tok ")
            yield GenerationChunk(finish_reason="stop", usage=Usage(1, self.limit))
        finally:
            if cancel.is_set():
                self.cancelled.set()


class SlowPlugin:
    def __init__(self, model: SlowModel) -> None:
        self.model = model

    @hookimpl
    def register_chat_models(self, register: Any, profile: Any) -> None:
        register(self.model)


SLOW = {"model": "slow", "messages": [{"role": "user", "content": "go"}]}


async def test_disconnect_cancels_generation_within_a_token(make_client: ClientFactory) -> None:
    model = SlowModel(delay=0.02, limit=1000)
    client = await make_client(extra_plugins=(("slow", SlowPlugin(model)),))
    response = await client.post("/v1/chat/completions", json={**SLOW, "stream": True})
    async for line in response.content:
        if b"tok" in line:
            break
    response.close()
    assert await asyncio.to_thread(model.cancelled.wait, 5)
    produced = model.produced
    await asyncio.sleep(0.2)
    assert model.produced <= produced + 1
    assert model.produced < 1000


async def test_non_streaming_disconnect_cancels_too(make_client: ClientFactory) -> None:
    model = SlowModel(delay=0.02, limit=1000)
    client = await make_client(extra_plugins=(("slow", SlowPlugin(model)),))
    with __import__("contextlib").suppress(asyncio.TimeoutError):
        await asyncio.wait_for(client.post("/v1/chat/completions", json=SLOW), 0.3)
    assert await asyncio.to_thread(model.cancelled.wait, 5)
    assert model.produced < 1000


async def test_full_queue_answers_503_with_retry_after(make_client: ClientFactory) -> None:
    model = SlowModel(delay=0.05, limit=20)
    client = await make_client(extra_plugins=(("slow", SlowPlugin(model)),), queue_size=1)
    tasks = [asyncio.create_task(client.post("/v1/chat/completions", json=SLOW)) for _ in range(4)]
    responses = await asyncio.gather(*tasks)
    statuses = sorted(r.status for r in responses)
    assert 200 in statuses
    assert 503 in statuses
    overloaded = next(r for r in responses if r.status == 503)
    assert overloaded.headers["Retry-After"]
    assert (await overloaded.json())["error"]["code"] == "queue_full"


async def test_event_loop_stays_responsive_during_generation(make_client: ClientFactory) -> None:
    model = SlowModel(delay=0.02, limit=50)
    client = await make_client(extra_plugins=(("slow", SlowPlugin(model)),))
    chat = asyncio.create_task(client.post("/v1/chat/completions", json=SLOW))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    health = await client.get("/appliance/health")
    assert health.status == 200
    assert time.monotonic() - started < 0.5
    assert "slow" in (await health.json())["models_loaded"]
    assert (await chat).status == 200


async def test_keep_alive_unloads_idle_models() -> None:
    model = SlowModel(delay=0, limit=1)
    scheduler = Scheduler(queue_size=2, keep_alive_s=0.2)
    try:
        items = [x async for x in scheduler.stream(model, lambda c: model.chat(ChatRequest([]), c))]
        assert items[-1].finish_reason == "stop"
        assert model.loaded and model.loads == 1
        assert [m.name for m in scheduler.loaded()] == ["slow"]
        await asyncio.sleep(0.6)
        assert not model.loaded and model.unloads == 1
        await scheduler.load(model, keep_alive=0)
        await asyncio.sleep(0.2)
        assert model.loads == 2 and model.unloads == 2
    finally:
        scheduler.shutdown()


async def test_model_errors_reach_the_caller_and_the_worker_survives() -> None:
    class Broken(SlowModel):
        def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
            raise RuntimeError("engine exploded")

    model = Broken()
    scheduler = Scheduler()
    try:
        for _ in range(2):
            try:
                async for _ in scheduler.stream(model, lambda c: model.chat(ChatRequest([]), c)):
                    pass
            except RuntimeError as exc:
                assert "exploded" in str(exc)
            else:
                raise AssertionError("the error was swallowed")
    finally:
        scheduler.shutdown()


async def test_app_cleanup_stops_workers(make_client: ClientFactory) -> None:
    model = SlowModel(delay=0, limit=1)
    client = await make_client(extra_plugins=(("slow", SlowPlugin(model)),))
    await client.post("/v1/chat/completions", json=SLOW)
    scheduler = client.app[APPLIANCE].scheduler
    assert scheduler.loaded()
    await client.close()
    assert not model.loaded


class FailsMidway(SlowModel):
    info = ModelInfo(name="flaky")

    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        yield GenerationChunk(text="partial ")
        raise RuntimeError("GPU fell off the bus")


async def test_a_failure_mid_stream_is_an_error_event_in_each_api(
    make_client: ClientFactory,
) -> None:
    import json

    client = await make_client(extra_plugins=(("flaky", SlowPlugin(FailsMidway())),))
    body = {"model": "flaky", "messages": [{"role": "user", "content": "go"}], "stream": True}
    sse = await (await client.post("/v1/chat/completions", json=body)).text()
    events = [line[6:] for line in sse.splitlines() if line.startswith("data: ")]
    assert "partial" in events[1]
    last = json.loads(events[-1])
    assert "failed while answering" in last["error"]["message"]
    assert "[DONE]" not in events and "GPU" not in sse
    lines = (await (await client.post("/api/chat", json=body)).text()).splitlines()
    assert json.loads(lines[0])["message"]["content"] == "partial "
    assert "failed while answering" in json.loads(lines[-1])["error"]
    whole = await client.post("/v1/chat/completions", json={**body, "stream": False})
    assert whole.status == 500 and "request id" in (await whole.json())["error"]["message"]
    again = await client.post("/v1/chat/completions", json={**body, "model": "echo"})
    assert again.status == 200  # the box keeps serving
