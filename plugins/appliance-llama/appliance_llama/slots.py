"""The slots of a batched context and the tokens each keeps cached for the next request.

A finished sequence's cache stays in the KV pool, so the next turn of its conversation (or
another request with the same system prompt) starts fast.

Every sequence's cells stay in the order of its positions. llama.cpp puts a new token in the
first free cell from its head, and freeing cells moves the head back to them; a sequence whose
next tokens landed in such a hole, below its own earlier cells, would be attended in another
order than alone, and its answer would drift from its lone one (measured: 14 of 36 batched
answers identical to their lone ones after a cancellation, 36 of 36 with this). So cells that
leave a slot (a cached tail that a new prompt does not share, a cancelled or failed sequence) are
*retired*, kept under a sequence id of their own that nobody attends, and the pool is compacted
(every kept cache copied out, the pool cleared, the caches copied back, each in one run of cells)
once the retired cells are a quarter of the kept ones, or when the pool is full.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

MIN_RETIRED = 64
"""Fewer retired cells than this are not worth a compaction. Retired cells cost attention
time (llama.cpp attends over every cell up to the highest in use, masked or not: measured here,
1,500 cells of another sequence slow one stream from 66 to ~50 tokens/s), so a compaction comes
once they are a quarter of the kept ones; its copying costs far less than the decoding that
wrote them."""


@dataclass(eq=False)
class Slot:
    id: int
    tokens: list[int] = field(default_factory=list)
    """Tokens whose keys and values are in the cache for this slot's sequence id."""
    sequence: Any = None
    last_used: float = 0.0


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

    def __init__(self, ctx: Any, memory: Any, count: int) -> None:
        self.ctx = ctx
        self.memory = memory
        self.all = [Slot(i) for i in range(count)]
        self.retired_id = count
        self.retired = 0
        """Cells held by the retired sequence id."""
        self.compactions = 0

    def free(self) -> list[Slot]:
        return [slot for slot in self.all if slot.sequence is None]

    def busy(self) -> int:
        return sum(1 for slot in self.all if slot.sequence is not None)

    def take(self, prompt: list[int]) -> tuple[Slot, int] | None:
        """The free slot whose cache shares the longest prefix with ``prompt``, with that
        prefix kept (at most all but the last token). None: no slot is free."""
        free = self.free()
        if not free:
            return None
        slot = max(free, key=lambda s: (common_prefix(s.tokens, prompt), -s.last_used))
        keep = min(common_prefix(slot.tokens, prompt), len(prompt) - 1)
        if not self._retire(slot, keep):
            self.forget(slot)
            keep = 0
        return slot, keep

    def give_back(self, slot: Slot, keep_cache: bool) -> None:
        """The slot's sequence is done; its cache is kept for the next request or forgotten."""
        slot.sequence = None
        slot.last_used = time.monotonic()
        if not keep_cache:
            self.forget(slot)

    def forget(self, slot: Slot) -> None:
        self._retire(slot, 0)

    def _retire(self, slot: Slot, start: int) -> bool:
        """Move the slot's cells from position ``start`` on to the retired id. False: the
        model's memory cannot drop a tail (then the whole cache must go)."""
        leaving = len(slot.tokens) - start
        llama_cpp.llama_memory_seq_cp(self.memory, slot.id, self.retired_id, start, -1)
        if not llama_cpp.llama_memory_seq_rm(self.memory, slot.id, start, -1):
            llama_cpp.llama_memory_seq_rm(self.memory, self.retired_id, start, -1)
            return False
        self.retired += max(leaving, 0)
        del slot.tokens[start:]
        return True

    def compact_if_worth(self) -> list[Slot]:
        """Compact when the retired cells are many; returns busy slots whose cache was lost."""
        kept = sum(len(slot.tokens) for slot in self.all)
        if self.retired < max(MIN_RETIRED, kept // 4):
            return []
        return self.compact(keep_idle=True)

    def make_room(self) -> tuple[bool, list[Slot]]:
        """The pool is full: compact it without idle caches. Returns whether anything was
        dropped, and the busy slots whose cache was lost."""
        idle = any(slot.tokens and slot.sequence is None for slot in self.all)
        if not idle and not self.retired:
            return False, []
        return True, self.compact(keep_idle=False)

    def compact(self, keep_idle: bool) -> list[Slot]:
        """Copy the kept caches out, clear the pool and copy them back, each into one run of
        cells in its order. Returns busy slots whose cache could not be copied back."""
        keep = [s for s in self.all if s.tokens and (keep_idle or s.sequence is not None)]
        saved = [(slot, self._save(slot)) for slot in keep]
        llama_cpp.llama_memory_clear(self.memory, False)
        self.retired = 0
        self.compactions += 1
        lost = []
        for slot in self.all:
            if slot not in keep:
                slot.tokens.clear()
        for slot, state in saved:
            if state is None or not llama_cpp.llama_state_seq_set_data(
                self.ctx, state, len(state), slot.id
            ):
                slot.tokens.clear()
                if slot.sequence is not None:
                    lost.append(slot)
        return lost

    def _save(self, slot: Slot) -> Any:
        size = llama_cpp.llama_state_seq_get_size(self.ctx, slot.id)
        state = (ctypes.c_uint8 * size)() if size else None
        if state is None or not llama_cpp.llama_state_seq_get_data(self.ctx, state, size, slot.id):
            return None
        return state
