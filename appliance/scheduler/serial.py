"""Serial models: one worker thread and one bounded queue per model, one job at a time.

whisper.cpp (and any engine that is not thread-safe, or cannot batch) is driven this way. Results
flow back to the event loop through the job's ticket; a client that goes away sets its cancel
event, which the model checks between tokens.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from appliance.errors import ApplianceError, Overloaded
from appliance.scheduler.ticket import END, Ticket, expiry, load_if_needed, wait_for

log = logging.getLogger(__name__)


class Schedulable(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def loaded(self) -> bool: ...

    @property
    def devices(self) -> tuple[str, ...]: ...

    def load(self) -> None: ...

    def unload(self) -> None: ...


@dataclass(eq=False)
class Job(Ticket):
    fn: Callable[[threading.Event], Any] = lambda cancel: None


@dataclass(eq=False)
class EmbedJob(Ticket):
    """Texts to embed; jobs waiting together share one ``embed`` call."""

    texts: list[str] = field(default_factory=list)


MAX_COALESCED_TEXTS = 256


class ModelWorker:
    slots = 1

    def __init__(self, model: Schedulable, queue_size: int, keep_alive_s: float) -> None:
        self.model = model
        self.default_keep_alive = keep_alive_s
        self.jobs: queue.Queue[Ticket | None] = queue.Queue(maxsize=queue_size)
        self.expires_at = 0.0
        self.busy = False
        self._stopping = False
        self.loads: Counter[str] | None = None
        self._thread = threading.Thread(target=self._run, name=f"model:{model.name}", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self.jobs.qsize()

    @property
    def slots_busy(self) -> int:
        return int(self.busy)

    def submit(self, job: Ticket) -> None:
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

    def stop(self, wait: bool = True) -> None:
        self._stopping = True
        self.expires_at = 0.0
        self.jobs.put(None)
        if wait:
            self._thread.join(timeout=30)

    def _timeout(self) -> float | None:
        return wait_for(self.expires_at) if self.model.loaded else None

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
            if isinstance(job, EmbedJob):
                self._embed([job, *self._more_embed_jobs(len(job.texts))])
            elif isinstance(job, Job):
                self._execute(job)

    def _more_embed_jobs(self, texts: int) -> list[EmbedJob]:
        """The embedding jobs waiting right behind this one (to share its engine call)."""
        taken: list[EmbedJob] = []
        with self.jobs.mutex:
            waiting = self.jobs.queue
            while waiting and isinstance(waiting[0], EmbedJob):
                if texts + len(waiting[0].texts) > MAX_COALESCED_TEXTS:
                    break
                job = waiting.popleft()
                texts += len(job.texts)
                taken.append(job)
            if taken:
                self.jobs.not_full.notify(len(taken))
        return taken

    def _embed(self, jobs: list[EmbedJob]) -> None:
        live = [job for job in jobs if not job.cancelled]
        for job in jobs:
            job.queued_ms = (time.monotonic() - job.enqueued_at) * 1000
        self.busy = True
        try:
            load_ms = load_if_needed(self.model, self.loads)
            if live:
                result = self.model.embed([text for job in live for text in job.texts])  # type: ignore[attr-defined]
                counts = result.token_counts or [0] * len(result.vectors)
                start = 0
                for job in live:
                    end = start + len(job.texts)
                    job.load_ms = load_ms
                    job.emit(
                        type(result)(
                            vectors=result.vectors[start:end],
                            prompt_tokens=sum(counts[start:end]),
                            token_counts=counts[start:end],
                        )
                    )
                    start = end
        except BaseException as exc:
            if not isinstance(exc, ApplianceError):
                log.exception("model %s failed", self.model.name)
            for job in live:
                job.emit(exc)
        finally:
            self.busy = False
            for job in jobs:
                keep = self.default_keep_alive if job.keep_alive is None else job.keep_alive
                self.expires_at = expiry(keep)
                job.emit(END)

    def _unload(self) -> None:
        # Until the next job: a model that stays loaded (or fails to unload) is not retried.
        self.expires_at = math.inf
        try:
            self.model.unload()
            log.info("unloaded model %s", self.model.name)
        except Exception:
            log.exception("unloading %s failed", self.model.name)

    def _execute(self, job: Job) -> None:
        job.queued_ms = (time.monotonic() - job.enqueued_at) * 1000
        if job.cancelled:
            job.emit(END)
            return
        self.busy = True
        try:
            job.load_ms = load_if_needed(self.model, self.loads)
            result = job.fn(job.cancel_event)
            if isinstance(result, Iterator):
                try:
                    for item in result:
                        job.emit(item)
                        if job.cancelled:
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
            self.expires_at = expiry(keep)
            job.emit(END)
