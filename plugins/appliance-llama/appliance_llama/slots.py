"""The slots of a batched context and the tokens each keeps cached for the next request.

A finished sequence's cache is what makes the next turn of its conversation (or another request
with the same system prompt) start fast. Left in the unified KV pool, idle caches cost everyone
else: attention runs over every cell up to the highest one in use, so the people decoding pay
for the caches of those who are not (measured here, SmolLM2-135M on 2 cores: one stream decodes
6 % slower beside seven idle 300-token caches, 21 % beside seven 1,500-token ones). So while
others use the pool, an idle slot's cache is *parked*: copied to host memory
(``llama_state_seq_get_data``) and its cells freed; the request that reuses it copies it back.
When the box is otherwise idle, the last cache stays in its cells and costs nothing to reuse.
Parked caches hold at most ``parked_budget`` tokens together (the hardware choice counts them);
beyond it the least recently used is dropped.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from typing import Any

import llama_cpp


@dataclass(eq=False)
class Slot:
    id: int
    tokens: list[int] = field(default_factory=list)
    """Tokens cached for this slot's sequence id: in the KV cells, or parked."""
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
    """Only the engine's worker thread changes them."""

    def __init__(self, ctx: Any, memory: Any, count: int, parked_budget: int) -> None:
        self.ctx = ctx
        self.memory = memory
        self.all = [Slot(i) for i in range(count)]
        self.parked_budget = parked_budget
        self.parked = 0
        """Caches parked since load (for the figures)."""
        self.restored = 0

    def free(self) -> list[Slot]:
        return [slot for slot in self.all if slot.sequence is None]

    def busy(self) -> int:
        return sum(1 for slot in self.all if slot.sequence is not None)

    def take(self, prompt: list[int]) -> tuple[Slot, int] | None:
        """The free slot whose cache shares the longest prefix with ``prompt``, with that
        prefix in its cells (at most all but the last token); the other idle caches are parked
        first, so the new sequence's cells come low in the pool. None: no slot is free."""
        free = self.free()
        if not free:
            return None
        slot = max(free, key=lambda s: (common_prefix(s.tokens, prompt), -s.last_used))
        keep = min(common_prefix(slot.tokens, prompt), len(prompt) - 1)
        for other in free:
            if other is not slot:
                self.park(other)
        if slot.parked is not None and (keep == 0 or not self._restore(slot)):
            self.forget(slot)
            keep = 0
        if not llama_cpp.llama_memory_seq_rm(self.memory, slot.id, keep, -1):
            self.forget(slot)
            keep = 0
        del slot.tokens[keep:]
        return slot, keep

    def give_back(self, slot: Slot, keep_cache: bool) -> None:
        """The slot's sequence is done; its cache is kept (in its cells while nobody else
        decodes, else parked) or forgotten."""
        slot.sequence = None
        slot.last_used = time.monotonic()
        if not keep_cache:
            self.forget(slot)
        elif self.busy():
            self.park(slot)

    def make_room(self) -> bool:
        """Free the cells of every idle cache (parking them); False when there were none."""
        idle = [s for s in self.all if s.sequence is None and s.tokens and s.parked is None]
        for slot in idle:
            self.park(slot)
        return bool(idle)

    def forget(self, slot: Slot) -> None:
        if slot.parked is None:
            llama_cpp.llama_memory_seq_rm(self.memory, slot.id, -1, -1)
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
        size = llama_cpp.llama_state_seq_get_size(self.ctx, slot.id)
        state = (ctypes.c_uint8 * size)() if size else None
        if state is None or not llama_cpp.llama_state_seq_get_data(self.ctx, state, size, slot.id):
            self.forget(slot)
            return
        llama_cpp.llama_memory_seq_rm(self.memory, slot.id, -1, -1)
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
        state = slot.parked
        slot.parked = None
        if not llama_cpp.llama_state_seq_set_data(self.ctx, state, len(state), slot.id):
            return False  # no room for it in the pool now: the prompt is read again
        self.restored += 1
        return True
