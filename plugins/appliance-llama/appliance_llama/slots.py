"""The slots of a batched context and the tokens each keeps cached for the next request.

A finished sequence's cache is what makes the next turn of its conversation (or another request
with the same system prompt) start fast. Left in the unified KV pool, idle caches cost everyone
else: llama.cpp attends over every cell up to the highest in use, masked or not (measured here,
SmolLM2-135M on 2 cores: 1,500 cells of another sequence slow one stream from 66 to ~50
tokens/s). So when a request starts, and when one ends while others decode, the idle caches are
*parked*: copied to host memory (``llama_state_seq_get_data``) and out of the cells; the request
that reuses one copies it back, as llama-server does with its idle slots. When the box is
otherwise idle, the last cache stays in its cells and costs nothing to reuse. Parked caches hold
at most ``parked_budget`` tokens together (the hardware choice counts them); beyond it the least
recently used is dropped.

A new conversation whose system prompt or template is in the cells of a request in flight shares
those cells (``llama_memory_seq_cp`` in a unified pool adds a sequence id to a cell, it copies
nothing), so it reads only its own part; llama-server reads such a prompt again in every slot.

Every sequence's cells stay in the order of its positions. llama.cpp puts a new token in the
first free cell from its head, and freeing cells moves the head back to them; a sequence whose
next tokens landed in such a hole, below its own earlier cells, would be attended in another
order than alone, and its answer would drift from its lone one (measured: 14 of 36 batched
answers identical to their lone ones after a cancellation, 36 of 36 with this). So cells that
leave a slot (a cached tail that a new prompt does not share, a cancelled sequence, a parked
cache) are *retired*, kept under a sequence id of their own that nobody attends, and the pool is
compacted (the caches in cells copied out, the pool cleared, the caches copied back, each into
one run of cells) once the retired cells are a quarter of the kept ones, or when the pool is full.
Retired cells that another sequence still shares are counted too (llama.cpp does not say which
cells are shared), so a compaction may come a little early; it ends the sharing, each cache then
having its own copy.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

MIN_RETIRED = 64
"""Fewer retired cells than this are not worth a compaction. Retired cells cost attention time
as idle caches do, so a compaction comes once they are a quarter of the kept ones; its copying
costs far less than the decoding that wrote them."""


@dataclass(eq=False)
class Slot:
    id: int
    tokens: list[int] = field(default_factory=list)
    """Tokens whose keys and values are in the cache for this slot's sequence id."""
    sequence: Any = None
    last_used: float = 0.0
    parked: Any = None
    """The cache's state in host memory while it is out of the KV cells."""


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Slots:
    """Only the engine's worker thread changes them. The context needs ``count + 1`` sequence
    ids: the last holds retired cells."""

    def __init__(self, ctx: Any, memory: Any, count: int, parked_budget: int) -> None:
        self.ctx = ctx
        self.memory = memory
        self.all = [Slot(i) for i in range(count)]
        self.retired_id = count
        self.retired = 0
        """Cells held by the retired sequence id."""
        self.parked_budget = parked_budget
        self.compactions = 0
        self.parked = 0
        """Caches parked since load (for the figures)."""
        self.restored = 0
        self.shared = 0
        """Prompts that started on another slot's cells (for the figures)."""

    def free(self) -> list[Slot]:
        return [slot for slot in self.all if slot.sequence is None]

    def busy(self) -> int:
        return sum(1 for slot in self.all if slot.sequence is not None)

    def take(self, prompt: list[int]) -> tuple[Slot, int] | None:
        """The free slot whose cache shares the longest prefix with ``prompt``, with that
        prefix in its cells (at most all but the last token); the other idle caches are parked
        first. When another slot holds a longer prefix in its cells (a system prompt or RAG
        template of a request in flight), the new sequence shares those cells instead. None:
        no slot is free."""
        free = self.free()
        if not free:
            return None
        slot = max(free, key=lambda s: (common_prefix(s.tokens, prompt), -s.last_used))
        keep = min(common_prefix(slot.tokens, prompt), len(prompt) - 1)
        donor, shared = self._donor(prompt)
        if donor is not None and shared > keep:
            # The donor is busy (a free one would be ``slot``): the new sequence takes an empty
            # slot, or the least recently used, and the other idle caches are parked for later.
            slot = min(free, key=lambda s: (bool(s.tokens), s.last_used))
            self._share(slot, donor, shared)
            keep = shared
        for other in free:
            if other is not slot:
                self.park(other)
        if slot.parked is not None and (keep == 0 or not self._restore(slot)):
            self.forget(slot)
            keep = 0
        if not self._retire(slot, keep):
            self.forget(slot)
            keep = 0
        del slot.tokens[keep:]
        return slot, keep

    def adopt(self, slot: Slot, prompt: list[int]) -> int:
        """Before a busy slot reads any of ``prompt`` itself: share the cells of another slot
        that now holds a longer prefix of it (written since this one was admitted). Returns the
        prompt tokens the slot holds."""
        donor, shared = self._donor(prompt)
        if donor is not None and shared > len(slot.tokens):
            self._share(slot, donor, shared)
        return len(slot.tokens)

    def _share(self, slot: Slot, donor: Slot, length: int) -> None:
        self.forget(slot)
        llama_cpp.llama_memory_seq_cp(self.memory, donor.id, slot.id, 0, length)
        slot.tokens[:] = donor.tokens[:length]
        self.shared += 1

    def longest_cached(self, prompt: list[int]) -> int:
        """The most prompt tokens a new sequence would find cached (see :meth:`take`)."""
        return max((common_prefix(slot.tokens, prompt) for slot in self.all), default=0)

    def _donor(self, prompt: list[int]) -> tuple[Slot | None, int]:
        """The slot whose cells hold the longest prefix of ``prompt``. Sharing them is free:
        llama.cpp's unified pool counts a cell's sequences, and the prefix's cells lie below
        every cell the new sequence will write, in their order."""
        best, length = None, 0
        for slot in self.all:
            if slot.parked is not None:
                continue
            n = common_prefix(slot.tokens, prompt)
            if n > length:
                best, length = slot, n
        return best, min(length, len(prompt) - 1)

    def give_back(self, slot: Slot, keep_cache: bool) -> None:
        """The slot's sequence is done; its cache is kept (in its cells while nobody else
        decodes, else parked) or forgotten."""
        slot.sequence = None
        slot.last_used = time.monotonic()
        if not keep_cache:
            self.forget(slot)
        elif self.busy():
            self.park(slot)

    def forget(self, slot: Slot) -> None:
        if slot.parked is None:
            self._retire(slot, 0)
        slot.parked = None
        slot.tokens.clear()

    def park(self, slot: Slot) -> None:
        """Move an idle cache out of the KV cells (or forget it when it cannot be kept)."""
        if slot.parked is not None or not slot.tokens:
            return
        if len(slot.tokens) > self.parked_budget:
            self.forget(slot)
            return
        self._fit_budget(len(slot.tokens))
        state = self._save(slot)
        if state is None:
            self.forget(slot)
            return
        self._retire(slot, 0)
        slot.parked = state
        self.parked += 1

    def _fit_budget(self, tokens: int) -> None:
        parked = sorted((s for s in self.all if s.parked is not None), key=lambda s: s.last_used)
        held = sum(len(s.tokens) for s in parked)
        while parked and held + tokens > self.parked_budget:
            oldest = parked.pop(0)
            held -= len(oldest.tokens)
            self.forget(oldest)

    def _restore(self, slot: Slot) -> bool:
        """Copy a parked cache back into one run of cells at the top of the pool."""
        state = slot.parked
        slot.parked = None
        if not self._load(slot, state):
            return False  # no room for it in the pool now: the prompt is read again
        self.restored += 1
        return True

    def _retire(self, slot: Slot, start: int) -> bool:
        """Move the slot's cells from position ``start`` on to the retired id (its tokens are
        the caller's to trim). False: the model's memory cannot drop a tail."""
        leaving = len(slot.tokens) - start
        llama_cpp.llama_memory_seq_cp(self.memory, slot.id, self.retired_id, start, -1)
        if not llama_cpp.llama_memory_seq_rm(self.memory, slot.id, start, -1):
            llama_cpp.llama_memory_seq_rm(self.memory, self.retired_id, start, -1)
            return False
        self.retired += max(leaving, 0)
        return True

    def compact_if_worth(self) -> list[Slot]:
        """Compact when the retired cells are many; returns busy slots whose cache was lost."""
        kept = sum(len(slot.tokens) for slot in self.all if slot.parked is None)
        if self.retired < max(MIN_RETIRED, kept // 4):
            return []
        return self.compact()

    def make_room(self) -> tuple[bool, list[Slot]]:
        """The pool is full: park the idle caches and compact. Returns whether any cells were
        freed, and the busy slots whose cache was lost."""
        idle = [s for s in self.all if s.sequence is None and s.tokens and s.parked is None]
        for slot in idle:
            self.park(slot)
        if not idle and not self.retired:
            return False, []
        return True, self.compact()

    def compact(self) -> list[Slot]:
        """Copy the caches in cells out, clear the pool and copy them back, each into one run
        of cells in its order. Returns busy slots whose cache could not be copied back."""
        keep = [s for s in self.all if s.tokens and s.parked is None]
        saved = [(slot, self._save(slot)) for slot in keep]
        llama_cpp.llama_memory_clear(self.memory, False)
        self.retired = 0
        self.compactions += 1
        lost = []
        for slot, state in saved:
            if not self._load(slot, state) and slot.sequence is not None:
                lost.append(slot)
        return lost

    def _load(self, slot: Slot, state: Any) -> bool:
        """Copy a saved cache into one run of cells; on failure the slot caches nothing."""
        if state is None or not llama_cpp.llama_state_seq_set_data(
            self.ctx, state, len(state), slot.id
        ):
            slot.tokens.clear()
            return False
        return True

    def _save(self, slot: Slot) -> Any:
        size = llama_cpp.llama_state_seq_get_size(self.ctx, slot.id)
        state = (ctypes.c_uint8 * size)() if size else None
        if state is None or not llama_cpp.llama_state_seq_get_data(self.ctx, state, size, slot.id):
            return None
        return state
