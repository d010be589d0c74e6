"""Measure the real decode speed once and keep the measured efficiency for later choices."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.capabilities import ChatModel, ChatRequest, Usage
from appliance.capabilities.chat import SamplingOptions
from appliance.hardware.fit import KV_TOKENS_READ, kv_bytes
from appliance.hardware.profiles import HardwareProfile
from appliance.models.catalog import Catalog

if TYPE_CHECKING:
    from appliance.scheduler import Scheduler

CALIBRATION_FILE = "calibration.json"
TOO_SLOW = 0.5
PROMPT = [{"role": "user", "content": "Count from one to forty in words, separated by commas."}]


@dataclass
class Calibration:
    profile: str
    model: str = ""
    measured_tps: float = 0.0
    predicted_tps: float = 0.0
    efficiency: float | None = None
    at: float = 0.0
    excluded: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_calibration(home: Path, profile: HardwareProfile) -> Calibration | None:
    path = home / CALIBRATION_FILE
    try:
        data = json.loads(path.read_text())
        calibration = Calibration(**data)
    except (OSError, ValueError, TypeError):
        return None
    return calibration if calibration.profile == profile.id else None


def save_calibration(home: Path, calibration: Calibration) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / CALIBRATION_FILE).write_text(json.dumps(asdict(calibration), indent=2))


async def measure_decode_tps(scheduler: Scheduler, model: ChatModel, tokens: int = 48) -> float:
    """Decode tokens/s over a short greedy run, driven by the scheduler like any request."""
    request = ChatRequest(PROMPT, SamplingOptions(max_tokens=tokens, temperature=0.0))
    usage: Usage | None = None
    started = time.monotonic()
    async for chunk in await scheduler.generate(model, request, caller="calibration"):
        if chunk.usage is not None:
            usage = chunk.usage
    if usage is None or usage.completion_tokens < 2:
        raise RuntimeError("the model produced too few tokens to measure")
    seconds = usage.decode_ms / 1000 or (time.monotonic() - started)
    return (usage.completion_tokens - 1) / seconds


async def calibrate(
    scheduler: Scheduler,
    model: ChatModel,
    profile: HardwareProfile,
    catalog: Catalog,
    previous: Calibration | None,
) -> Calibration:
    """Measure ``model``; derive the efficiency; exclude it if it fails or runs far too slow."""
    result = Calibration(
        profile=profile.id,
        model=model.name,
        at=time.time(),
        excluded=dict(previous.excluded) if previous else {},
    )
    try:
        measured = await measure_decode_tps(scheduler, model)
    except Exception as exc:
        result.excluded[model.name] = f"failed to load or run: {exc}"
        result.notes.append(f"{model.name} failed ({exc}); stepping down one size.")
        return result
    entry = catalog.get(model.name) if model.name in {m.id for m in catalog.models} else None
    result.measured_tps = round(measured, 2)
    if entry is None:
        result.notes.append(f"{model.name} is not in the catalog; efficiency not derived.")
        return result
    quant = entry.quant(model.info.quantization or None)
    read = quant.size + kv_bytes(entry, KV_TOKENS_READ)
    predicted = profile.efficiency * profile.bandwidth_gbps * 1e9 / read
    result.predicted_tps = round(predicted, 2)
    result.efficiency = round(measured * read / (profile.bandwidth_gbps * 1e9), 4)
    if measured < TOO_SLOW * predicted:
        result.excluded[model.name] = (
            f"measured {measured:.1f} tok/s, far below the predicted {predicted:.1f}"
        )
        result.notes.append(f"{model.name} runs far below prediction; stepping down one size.")
    return result


def as_dict(calibration: Calibration | None) -> dict[str, Any] | None:
    return asdict(calibration) if calibration else None
