"""A request in flight: what a worker thread fills and the event loop reads."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
END = object()
# A keep-alive is waited out in steps no longer than this, so "forever" never overflows a timeout.
LONGEST_WAIT_S = 3600.0
MAX_KEEP_ALIVE_S = 10 * 365 * 86400.0


def expiry(keep_alive_s: float) -> float:
    """The wall-clock time a keep-alive ends; negative or infinite means never."""
    if keep_alive_s < 0 or keep_alive_s >= MAX_KEEP_ALIVE_S or math.isinf(keep_alive_s):
        return math.inf
    return time.time() + keep_alive_s


def wait_for(expires_at: float) -> float:
    return max(0.0, min(expires_at - time.time(), LONGEST_WAIT_S))


def load_if_needed(model: Any, loads: Counter[str] | None = None) -> float:
    """Load ``model`` unless it is loaded; return the milliseconds it took (0 when loaded)."""
    if model.loaded:
        return 0.0
    started = time.monotonic()
    model.load()
    if loads is not None:
        loads[model.name] += 1
    elapsed = (time.monotonic() - started) * 1000
    log.info("loaded model %s in %.0f ms", model.name, elapsed)
    return elapsed


def _deliver(items: list[tuple[Ticket, Any]]) -> None:
    for ticket, item in items:
        ticket.results.put_nowait(item)


def emit_all(items: Iterable[tuple[Ticket, Any]]) -> None:
    """Hand items to their tickets' event loops with one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Ticket, Any]]] = {}
    for ticket, item in items:
        by_loop.setdefault(ticket.loop, []).append((ticket, item))
    for loop, batch in by_loop.items():
        if not loop.is_closed():
            loop.call_soon_threadsafe(_deliver, batch)


@dataclass(eq=False)
class Ticket:
    """One request: an async iterator of what the model produced, cancellable from the loop."""

    loop: asyncio.AbstractEventLoop
    keep_alive: float | None = None
    caller: str = ""
    cancel_event: threading.Event = field(default_factory=threading.Event)
    results: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    enqueued_at: float = field(default_factory=time.monotonic)
    load_ms: float = 0.0
    queued_ms: float = 0.0
    finished: bool = False

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def cancel(self) -> None:
        self.cancel_event.set()

    def emit(self, item: Any) -> None:
        emit_all([(self, item)])

    def __aiter__(self) -> Ticket:
        return self

    async def __anext__(self) -> Any:
        if self.finished:
            raise StopAsyncIteration
        item = await self.results.get()
        if item is END:
            self.finished = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self.finished = True
            raise item
        return item

    async def aclose(self) -> None:
        self.cancel()
