"""The one place that knows how models are driven, and the entry point for everything that
generates.

``await scheduler.generate(model, request)`` admits a request (or refuses it with its 4xx/503
before any response starts) and returns a :class:`Ticket`: an async iterator of
:class:`~appliance.capabilities.GenerationChunk`. How the chunks are made depends on how the
model is driven (``ChatModel.driving``): serial models run one job at a time on their own
thread, batched models share engine calls between sequences (:mod:`.batched`), async models run
on the event loop. Queues are bounded (full: 503 with Retry-After) and the event loop never
blocks on inference.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from appliance.capabilities.chat import (
    AsyncChatModel,
    BatchedChatModel,
    ChatModel,
    ChatRequest,
    GenerationRequest,
)
from appliance.capabilities.embed import Embedder, EmbeddingResult
from appliance.errors import Overloaded
from appliance.scheduler.batched import BatchWorker, SequenceTicket
from appliance.scheduler.serial import EmbedJob, Job, ModelWorker, Schedulable
from appliance.scheduler.ticket import END, Ticket, expiry

__all__ = ["Job", "LoadedModel", "Scheduler", "Ticket"]


@dataclass(frozen=True)
class LoadedModel:
    name: str
    expires_at: float
    queued: int
    slots: int
    slots_busy: int
    devices: tuple[str, ...] = ()

    @property
    def busy(self) -> bool:
        return self.slots_busy > 0


Worker = ModelWorker | BatchWorker


class Scheduler:
    def __init__(self, queue_size: int = 16, keep_alive_s: float = 300.0) -> None:
        self.queue_size = queue_size
        self.keep_alive_s = keep_alive_s
        self._workers: dict[str, Worker] = {}
        self._async_running: dict[str, int] = {}
        self._lock = threading.Lock()
        self.loads: collections.Counter[str] = collections.Counter()
        """Model loads by name since start (for the metrics)."""

    def worker(self, model: Schedulable) -> Worker:
        with self._lock:
            worker = self._workers.get(model.name)
            if worker is None or worker.model is not model:
                if worker is not None:  # another model took this name: retire the old one
                    worker.stop(wait=False)
                if isinstance(model, BatchedChatModel):
                    worker = BatchWorker(model, self.queue_size, self.keep_alive_s)
                else:
                    worker = ModelWorker(model, self.queue_size, self.keep_alive_s)
                worker.loads = self.loads
                self._workers[model.name] = worker
            return worker

    async def generate(
        self,
        model: ChatModel,
        request: GenerationRequest,
        *,
        caller: str = "",
        keep_alive: float | None = None,
    ) -> Ticket:
        """Admit ``request`` for ``model`` and return its ticket (iterate it for the chunks).

        Raises before anything is produced when the request is refused (its 4xx) or the model's
        line is full (503 with Retry-After)."""
        engine, routed = model.route(request)
        loop = asyncio.get_running_loop()
        if isinstance(engine, AsyncChatModel):
            return await self._start_async(engine, routed, loop)
        worker = self.worker(engine)
        if isinstance(worker, BatchWorker):
            ticket = SequenceTicket(loop=loop, keep_alive=keep_alive, caller=caller)
            ticket.request = routed
            ready: asyncio.Future[BaseException | None] = loop.create_future()

            def signal(error: BaseException | None) -> None:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(_resolve, ready, error)

            worker.submit(ticket, signal)
            try:
                error = await asyncio.shield(ready)
            except asyncio.CancelledError:
                ticket.cancel()
                raise
            if error is not None:
                raise error
            return ticket

        def work(cancel: threading.Event) -> Iterator[Any]:
            if isinstance(routed, ChatRequest):
                return engine.chat(routed, cancel)
            return engine.complete(routed, cancel)

        job = Job(loop=loop, keep_alive=keep_alive, caller=caller, fn=work)
        worker.submit(job)
        return job

    async def _start_async(
        self, model: AsyncChatModel, request: GenerationRequest, loop: asyncio.AbstractEventLoop
    ) -> Ticket:
        """Run an async model's generation; a failure before its first chunk (a peer's 4xx,
        no peer at all) raises here, before any response starts, like a local refusal."""
        running = self._async_running.get(model.name, 0)
        if running >= self.queue_size:
            raise Overloaded(f"model '{model.name}' has {running} requests in flight")
        self._async_running[model.name] = running + 1
        ticket = Ticket(loop=loop)
        first: asyncio.Future[BaseException | None] = loop.create_future()

        async def pump() -> None:
            try:
                async with contextlib.aclosing(model.generate(request)) as chunks:  # type: ignore[type-var]
                    async for chunk in chunks:
                        _resolve(first, None)
                        ticket.results.put_nowait(chunk)
                        if ticket.cancelled:
                            break
            except Exception as exc:
                if first.done():
                    ticket.results.put_nowait(exc)
                else:
                    first.set_result(exc)
            finally:
                _resolve(first, None)
                self._async_running[model.name] -= 1
                ticket.results.put_nowait(END)

        task = loop.create_task(pump())
        ticket.cancel_event = _TaskCancel(task)
        try:
            error = await asyncio.shield(first)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if error is not None:
            raise error
        return ticket

    async def embed(
        self, embedder: Embedder, texts: list[str], keep_alive: float | None = None
    ) -> EmbeddingResult:
        """Embed ``texts``; requests waiting at the same moment share one engine call."""
        worker = self.worker(embedder)
        assert isinstance(worker, ModelWorker)
        loop = asyncio.get_running_loop()
        job: Ticket
        if not embedder.coalesce:
            job = Job(loop=loop, keep_alive=keep_alive, fn=lambda cancel: embedder.embed(texts))
        else:
            job = EmbedJob(loop=loop, keep_alive=keep_alive, texts=texts)
        worker.submit(job)
        result: EmbeddingResult | None = None
        try:
            async for item in job:
                result = item
        finally:
            job.cancel()
        assert result is not None
        return result

    async def stream(
        self,
        model: Schedulable,
        fn: Callable[[threading.Event], Iterator[Any]],
        keep_alive: float | None = None,
    ) -> AsyncIterator[Any]:
        """Run ``fn`` on a serial model's thread and yield what it yields (transcription,
        embeddings). Cancels on early exit."""
        job = Job(loop=asyncio.get_running_loop(), keep_alive=keep_alive, fn=fn)
        worker = self.worker(model)
        assert isinstance(worker, ModelWorker), "batched models generate through generate()"
        worker.submit(job)
        try:
            async for item in job:
                yield item
        finally:
            job.cancel()

    async def run(
        self,
        model: Schedulable,
        fn: Callable[[threading.Event], Any],
        keep_alive: float | None = None,
    ) -> Any:
        """Run ``fn`` on a serial model's thread and return its result."""
        result: Any = None
        async for item in self.stream(model, lambda cancel: iter([fn(cancel)]), keep_alive):
            result = item
        return result

    async def load(self, model: Schedulable, keep_alive: float | None = None) -> float:
        """Load the model now (if needed); return the load time in milliseconds."""
        worker = self.worker(model)
        loop = asyncio.get_running_loop()
        if isinstance(worker, ModelWorker):
            job = Job(loop=loop, keep_alive=keep_alive)
            worker.submit(job)
            async for _ in job:
                pass
            return job.load_ms
        ticket = Ticket(loop=loop, keep_alive=keep_alive)
        batch_worker = worker

        def load() -> None:
            try:
                batch_worker.ensure_loaded(ticket)
                keep = batch_worker.default_keep_alive if keep_alive is None else keep_alive
                batch_worker.expires_at = expiry(keep)
            except BaseException as exc:
                ticket.emit(exc)
            ticket.emit(END)

        batch_worker.call(load)
        async for _ in ticket:
            pass
        return ticket.load_ms

    def unload(self, name: str) -> bool:
        worker = self._workers.get(name)
        if worker is None or not worker.model.loaded:
            return False
        worker.request_unload()
        return True

    def loaded(self) -> list[LoadedModel]:
        return [
            LoadedModel(
                w.model.name, w.expires_at, w.queued, w.slots, w.slots_busy, w.model.devices
            )
            for w in list(self._workers.values())
            if w.model.loaded
        ]

    def usage(self) -> list[dict[str, Any]]:
        """Each loaded model's slots (busy and free) and waiting line, for /api/ps and IT."""
        return [
            {
                "name": m.name,
                "slots": m.slots,
                "slots_busy": m.slots_busy,
                "slots_free": max(0, m.slots - m.slots_busy),
                "queued": m.queued,
                "devices": list(m.devices),
            }
            for m in self.loaded()
        ]

    def shutdown(self) -> None:
        for worker in list(self._workers.values()):
            worker.stop()
        self._workers.clear()


def _resolve(future: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not future.done():
        future.set_result(error)


class _TaskCancel(threading.Event):
    """A cancel event that also cancels the async model's task."""

    def __init__(self, task: asyncio.Task[None]) -> None:
        super().__init__()
        self._task = task

    def set(self) -> None:
        super().set()
        self._task.get_loop().call_soon_threadsafe(self._task.cancel)
