"""The slots of a batched context and the tokens each keeps cached for the next request.

A finished sequence's cache stays in the KV pool, so the next turn of its conversation (or
another request with the same system prompt) starts fast; when the pool is full, idle caches are
forgotten first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import llama_cpp


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
    """Only the engine's worker thread changes them."""

    def __init__(self, memory: Any, count: int) -> None:
        self.memory = memory
        self.all = [Slot(i) for i in range(count)]

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
        if not llama_cpp.llama_memory_seq_rm(self.memory, slot.id, keep, -1):
            self.forget(slot)
            keep = 0
        del slot.tokens[keep:]
        return slot, keep

    def give_back(self, slot: Slot, keep_cache: bool) -> None:
        """The slot's sequence is done; its cache is kept for the next request or forgotten."""
        slot.sequence = None
        slot.last_used = time.monotonic()
        if not keep_cache:
            self.forget(slot)

    def make_room(self) -> bool:
        """Forget every idle cache; False when there were none."""
        idle = [s for s in self.all if s.sequence is None and s.tokens]
        for slot in idle:
            self.forget(slot)
        return bool(idle)

    def forget(self, slot: Slot) -> None:
        llama_cpp.llama_memory_seq_rm(self.memory, slot.id, -1, -1)
        slot.tokens.clear()
