"""A waiting line that takes callers in turn, so one busy script does not starve the office."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """First in, first out per caller; callers take turns (round robin)."""

    def __init__(self) -> None:
        self._lines: OrderedDict[str, deque[T]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[T]:
        for line in self._lines.values():
            yield from line

    def push(self, caller: str, item: T) -> None:
        self._lines.setdefault(caller, deque()).append(item)
        self._size += 1

    def peek(self) -> T | None:
        for line in self._lines.values():
            return line[0]
        return None

    def pop(self) -> T | None:
        """The next caller's oldest item; that caller then goes to the back of the line."""
        if not self._lines:
            return None
        caller, line = next(iter(self._lines.items()))
        item = line.popleft()
        self._size -= 1
        if line:
            self._lines.move_to_end(caller)
        else:
            del self._lines[caller]
        return item

    def remove(self, item: T) -> bool:
        for caller, line in self._lines.items():
            if item in line:
                line.remove(item)
                self._size -= 1
                if not line:
                    del self._lines[caller]
                return True
        return False
