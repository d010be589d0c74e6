"""One worker thread and one bounded queue per loaded model.

llama.cpp and whisper.cpp contexts are not thread-safe, so each model is driven by exactly one
thread. Requests wait their turn in a bounded queue (full: 503 with Retry-After), results flow back
to the event loop through ``call_soon_threadsafe``, and a client that goes away sets the job's
cancel event, which the model checks between tokens. Models load on first use (or at start) and
unload after their keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from appliance.errors import ApplianceError, Overloaded

log = logging.getLogger(__name__)


class Schedulable(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None: ...

    def unload(self) -> None: ...


_END = object()


@dataclass
class Job:
    fn: Callable[[threading.Event], Any]
    loop: asyncio.AbstractEventLoop
    keep_alive: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    results: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    enqueued_at: float = field(default_factory=time.monotonic)
    load_ms: float = 0.0
    queued_ms: float = 0.0

    def emit(self, item: Any) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.results.put_nowait, item)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    expires_at: float
    queued: int
    busy: bool


class ModelWorker:
    def __init__(self, model: Schedulable, queue_size: int, keep_alive_s: float) -> None:
        self.model = model
        self.default_keep_alive = keep_alive_s
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self.expires_at = 0.0
        self.busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"model:{model.name}", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise Overloaded(
                f"model '{self.model.name}' has {self.jobs.maxsize} requests waiting; retry shortly"
            ) from None

    def request_unload(self) -> None:
        self.expires_at = 0.0
        with contextlib.suppress(queue.Full):
            self.jobs.put_nowait(None)

    def stop(self) -> None:
        self._stopping = True
        self.expires_at = 0.0
        self.jobs.put(None)
        self._thread.join(timeout=30)

    def _timeout(self) -> float | None:
        if not self.model.loaded:
            return None
        return max(0.0, self.expires_at - time.time())

    def _run(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=self._timeout())
            except queue.Empty:
                job = None
            if job is None:
                if self.model.loaded and time.time() >= self.expires_at:
                    self._unload()
                if self._stopping:
                    return
                continue
            self._execute(job)

    def _unload(self) -> None:
        try:
            self.model.unload()
            log.info("unloaded model %s", self.model.name)
        except Exception:
            log.exception("unloading %s failed", self.model.name)

    def _execute(self, job: Job) -> None:
        job.queued_ms = (time.monotonic() - job.enqueued_at) * 1000
        if job.cancel.is_set():
            job.emit(_END)
            return
        self.busy = True
        try:
            if not self.model.loaded:
                started = time.monotonic()
                self.model.load()
                job.load_ms = (time.monotonic() - started) * 1000
                log.info("loaded model %s in %.0f ms", self.model.name, job.load_ms)
            result = job.fn(job.cancel)
            if isinstance(result, Iterator):
                try:
                    for item in result:
                        job.emit(item)
                        if job.cancel.is_set():
                            break
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            else:
                job.emit(result)
        except BaseException as exc:  # reported to the request, never kills the worker
            if not isinstance(exc, ApplianceError):
                log.exception("model %s failed", self.model.name)
            job.emit(exc)
        finally:
            self.busy = False
            keep = self.default_keep_alive if job.keep_alive is None else job.keep_alive
            self.expires_at = time.time() + keep
            job.emit(_END)


class Scheduler:
    def __init__(self, queue_size: int = 16, keep_alive_s: float = 300.0) -> None:
        self.queue_size = queue_size
        self.keep_alive_s = keep_alive_s
        self._workers: dict[str, ModelWorker] = {}
        self._lock = threading.Lock()

    def worker(self, model: Schedulable) -> ModelWorker:
        with self._lock:
            worker = self._workers.get(model.name)
            if worker is None or worker.model is not model:
                worker = ModelWorker(model, self.queue_size, self.keep_alive_s)
                self._workers[model.name] = worker
            return worker

    async def stream(
        self,
        model: Schedulable,
        fn: Callable[[threading.Event], Iterator[Any]],
        keep_alive: float | None = None,
        on_start: Callable[[Job], None] | None = None,
    ) -> AsyncIterator[Any]:
        """Run ``fn`` on the model's thread and yield what it yields. Cancels on early exit.

        ``on_start`` sees the job once it runs (its ``load_ms`` and ``queued_ms`` are set).
        """
        job = Job(fn=fn, loop=asyncio.get_running_loop(), keep_alive=keep_alive)
        self.worker(model).submit(job)
        started = False
        try:
            while True:
                item = await job.results.get()
                if not started and on_start is not None:
                    on_start(job)
                started = True
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancel.set()

    async def run(
        self,
        model: Schedulable,
        fn: Callable[[threading.Event], Any],
        keep_alive: float | None = None,
    ) -> Any:
        """Run ``fn`` on the model's thread and return its result."""
        result: Any = None
        async for item in self.stream(model, lambda cancel: iter([fn(cancel)]), keep_alive):
            result = item
        return result

    async def load(self, model: Schedulable, keep_alive: float | None = None) -> float:
        """Load the model now (if needed); return the load time in milliseconds."""
        job = Job(fn=lambda cancel: None, loop=asyncio.get_running_loop(), keep_alive=keep_alive)
        self.worker(model).submit(job)
        while (item := await job.results.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
        return job.load_ms

    def unload(self, name: str) -> bool:
        worker = self._workers.get(name)
        if worker is None or not worker.model.loaded:
            return False
        worker.request_unload()
        return True

    def loaded(self) -> list[LoadedModel]:
        return [
            LoadedModel(w.model.name, w.expires_at, w.jobs.qsize(), w.busy)
            for w in list(self._workers.values())
            if w.model.loaded
        ]

    def shutdown(self) -> None:
        for worker in list(self._workers.values()):
            worker.stop()
        self._workers.clear()
