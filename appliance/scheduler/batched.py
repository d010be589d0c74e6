"""Batched models: one thread per model admits, steps and retires many sequences at once.

Each loop iteration runs the control messages that arrived (prepare a request, load, unload),
retires sequences whose client left, admits waiting sequences into free slots (callers in turn),
then makes one engine call (``step``) over every admitted sequence. A failing step fails the
sequences in it with a clear error and the worker carries on; nothing is left hanging.

While the model is loaded, a model that allows it has new requests prepared on a thread of their
own beside the running step (templates and tokenizing cost milliseconds, which would otherwise
delay every reader's next token); a prepared request that could take a free slot then asks the
model to cut the running step short (:meth:`BatchedChatModel.interrupt`).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.capabilities.chat import BatchedChatModel, GenerationRequest
from appliance.errors import ApplianceError, Overloaded
from appliance.scheduler.fair import FairQueue
from appliance.scheduler.ticket import END, Ticket, emit_all, expiry, load_if_needed, wait_for

log = logging.getLogger(__name__)
_STOP = object()
_WAKE = object()


@dataclass(eq=False)
class SequenceTicket(Ticket):
    request: GenerationRequest | None = None
    sequence: Any = None
    admitted_at: float = 0.0


class BatchWorker:
    def __init__(self, model: BatchedChatModel, queue_size: int, keep_alive_s: float) -> None:
        self.model = model
        self.queue_size = queue_size
        self.default_keep_alive = keep_alive_s
        self.expires_at = 0.0
        self.pending: FairQueue[SequenceTicket] = FairQueue()
        self.active: list[SequenceTicket] = []
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._reserved = 0
        self._preparing = 0
        """Requests being prepared beside the worker; the model stays loaded meanwhile."""
        self._unloading = False
        self._stopping = False
        self._lock = threading.Lock()
        self._aside: queue.Queue[Callable[[], None]] | None = None
        self.loads: Counter[str] | None = None
        self._thread = threading.Thread(target=self._run, name=f"batch:{model.name}", daemon=True)
        self._thread.start()

    @property
    def slots(self) -> int:
        return self.model.slots

    @property
    def slots_busy(self) -> int:
        return len(self.active)

    @property
    def queued(self) -> int:
        return len(self.pending) + self._reserved

    # Called from the event loop.
    def submit(self, ticket: SequenceTicket, ready: Callable[[BaseException | None], None]) -> None:
        """Queue a request for preparation; ``ready`` is called (on the worker) once it waits for
        a slot, or with the error that refuses it. Raises ``Overloaded`` when the line is full:
        the box holds ``slots + queue_size`` requests, however fast they arrive."""
        with self._lock:
            if self._stopping:
                raise ApplianceError("the box is shutting down", status=503)
            free_slots = max(0, self.model.slots - len(self.active))
            if len(self.pending) + self._reserved >= self.queue_size + free_slots:
                raise Overloaded(
                    f"model '{self.model.name}' has {self.queue_size} requests waiting; "
                    "retry shortly"
                )
            self._reserved += 1
            aside = (
                self.model.prepares_while_stepping
                and self.model.loaded
                and not (self._unloading or self._stopping)
            )
            if aside:
                self._preparing += 1
        if aside:
            self._preparer().put(lambda: self._prepare(ticket, ready, aside=True))
        else:
            self._inbox.put(lambda: self._prepare(ticket, ready))

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the worker thread between steps."""
        self._inbox.put(fn)

    def request_unload(self) -> None:
        self.expires_at = 0.0
        self._inbox.put(lambda: None)

    def stop(self, wait: bool = True) -> None:
        self.expires_at = 0.0
        with self._lock:  # from now on requests are refused, none is left unanswered
            self._stopping = True
        self._inbox.put(_STOP)
        if self._aside is not None:
            self._aside.put(_STOP)  # type: ignore[arg-type]
        if wait:
            self._thread.join(timeout=30)

    # The preparing thread (started with the first request prepared aside).
    def _preparer(self) -> queue.Queue[Callable[[], None]]:
        with self._lock:
            if self._aside is None:
                self._aside = queue.Queue()
                threading.Thread(
                    target=self._prepare_loop,
                    args=(self._aside,),
                    name=f"prepare:{self.model.name}",
                    daemon=True,
                ).start()
            return self._aside

    def _prepare_loop(self, jobs: queue.Queue[Any]) -> None:
        while (job := jobs.get()) is not _STOP:
            job()

    def _prepare(
        self,
        ticket: SequenceTicket,
        ready: Callable[[BaseException | None], None],
        aside: bool = False,
    ) -> None:
        """Prepare on the worker (loading the model first) or aside, beside a running step."""
        error: BaseException | None = None
        try:
            if ticket.cancelled:
                raise ApplianceError("the client went away", status=499)
            if not aside:
                self.ensure_loaded(ticket)
            assert ticket.request is not None
            ticket.sequence = self.model.prepare(ticket.request)
        except BaseException as exc:
            if not isinstance(exc, ApplianceError):
                log.exception("preparing a request for %s failed", self.model.name)
            error = exc
        could_start = False
        with self._lock:  # from reserved to waiting in one move (see submit)
            self._reserved -= 1
            if aside:
                self._preparing -= 1
            if error is None and self._stopping:
                error = ApplianceError("the box is shutting down", status=503)
            if error is None:
                self.pending.push(ticket.caller, ticket)
                could_start = self.pending.peek() is ticket and len(self.active) < self.model.slots
        if aside:
            self._inbox.put(_WAKE)  # the worker may be waiting idle, or waiting to unload
        ready(error)
        if aside and could_start:
            self.model.interrupt(ticket.sequence)

    # The worker thread.
    def ensure_loaded(self, ticket: Ticket) -> None:
        ticket.load_ms = load_if_needed(self.model, self.loads)

    def _run(self) -> None:
        while True:
            idle = not self.active and not len(self.pending)
            try:
                # While requests are prepared aside, the keep-alive cannot end the model: wait
                # for the message each of them sends when done.
                expiring = self.model.loaded and not self._preparing
                timeout = (wait_for(self.expires_at) if expiring else None) if idle else 0
                message = self._inbox.get(timeout=timeout) if idle else self._inbox.get_nowait()
            except queue.Empty:
                message = None
            if message is _STOP:
                self._shut_down()
                return
            try:
                if message is not None:
                    if message is not _WAKE:
                        message()
                    self._drain_inbox()
                self._retire_cancelled()
                self._admit()
                if self.active:
                    self._step()
                elif not self.pending and self.model.loaded and time.time() >= self.expires_at:
                    self._unload()
            except Exception:  # the worker survives; its requests fail clearly
                log.exception(
                    "model %s failed; failing its requests and carrying on", self.model.name
                )
                # Logged above; clients get a message without the engine's internals.
                self._fail_all(
                    ApplianceError(f"the model {self.model.name} failed while answering; retry")
                )

    def _drain_inbox(self) -> None:
        while True:
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                return
            if message is _STOP:
                self._inbox.put(_STOP)
                return
            if message is not _WAKE:
                message()

    def _retire_cancelled(self) -> None:
        for ticket in [t for t in self.active if t.cancelled]:
            self._retire(ticket, cancelled=True)
        with self._lock:
            gone = [t for t in self.pending if t.cancelled]
            for ticket in gone:
                self.pending.remove(ticket)
        emit_all((t, END) for t in gone)

    def _admit(self) -> None:
        while len(self.active) < self.model.slots:
            with self._lock:
                ticket = self.pending.peek()
            if ticket is None:
                return
            if not self.model.admit(ticket.sequence):
                if not self.active:
                    with self._lock:
                        self.pending.remove(ticket)
                    emit_all(
                        [
                            (ticket, Overloaded(f"model '{self.model.name}' has no room now")),
                            (ticket, END),
                        ]
                    )
                    continue
                return
            with self._lock:  # one move, so submit() never counts the ticket in neither place
                self.pending.pop()  # the ticket peeked at; its caller goes to the back
                self.active.append(ticket)
            ticket.admitted_at = time.monotonic()
            ticket.queued_ms = (ticket.admitted_at - ticket.enqueued_at) * 1000

    def _step(self) -> None:
        by_sequence = {id(t.sequence): t for t in self.active}
        outputs = self.model.step([t.sequence for t in self.active])
        deliveries: list[tuple[Ticket, Any]] = []
        done: list[SequenceTicket] = []
        failed: list[SequenceTicket] = []
        for sequence, item in outputs:
            ticket = by_sequence[id(sequence)]
            deliveries.append((ticket, item))
            if isinstance(item, BaseException):
                failed.append(ticket)
            elif item.finish_reason is not None:
                done.append(ticket)
        emit_all(deliveries)
        for ticket in done:
            self._retire(ticket, cancelled=False)
        for ticket in failed:
            self._retire(ticket, cancelled=True)

    def _retire(self, ticket: SequenceTicket, cancelled: bool) -> None:
        if ticket in self.active:
            self.active.remove(ticket)
        try:
            self.model.release(ticket.sequence, cancelled)
        finally:
            keep = self.default_keep_alive if ticket.keep_alive is None else ticket.keep_alive
            self.expires_at = expiry(keep)
            ticket.emit(END)

    def _fail_all(self, error: ApplianceError) -> None:
        with self._lock:
            tickets = [*self.active, *self.pending]
            self.pending = FairQueue()
        self.active = []
        for ticket in tickets:
            try:
                self.model.release(ticket.sequence, cancelled=True)
            except Exception:
                log.exception("releasing a sequence of %s failed", self.model.name)
        emit_all([item for t in tickets for item in ((t, error), (t, END))])

    def _shut_down(self) -> None:
        with self._lock:
            self._stopping = True
        self._fail_all(ApplianceError("the box is shutting down", status=503))
        deadline = time.monotonic() + 10
        while self._preparing and time.monotonic() < deadline:
            time.sleep(0.01)  # a preparation in flight reads the model; it ends in milliseconds
        self._unload()

    def _unload(self) -> None:
        with self._lock:
            if not self.model.loaded or self._preparing:
                return  # a request being prepared aside needs the model; it wakes us when done
            self._unloading = True
        self.expires_at = math.inf  # not retried until the next request sets a keep-alive
        try:
            self.model.unload()
            log.info("unloaded model %s", self.model.name)
        except Exception:
            log.exception("unloading %s failed", self.model.name)
        finally:
            with self._lock:
                self._unloading = False
