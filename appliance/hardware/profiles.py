"""Device profiles: what a class of hardware can do (bandwidth, accelerator, memory reserve)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HardwareProfile:
    id: str
    name: str
    accelerator: str = "cpu"
    bandwidth_gbps: float = 20.0
    reserve_bytes: int = 1 << 30
    efficiency: float = 0.55
    chat_floor_tps: float = 5.0
    specificity: int = 0
    match: dict[str, Any] = field(default_factory=dict)
    source: str = ""


GENERIC = HardwareProfile(
    id="generic",
    name="Unknown hardware (conservative defaults)",
    source="conservative defaults until the hardware is detected",
)
