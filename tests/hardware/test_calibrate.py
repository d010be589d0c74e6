"""Calibration: a measured efficiency replaces the estimate; a failing model is stepped past."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance import ChatModel, ChatRequest, GenerationChunk, ModelInfo, Usage, hookimpl
from appliance.hardware.calibrate import calibrate, load_calibration
from appliance.hardware.facts import probe
from appliance.hardware.fit import choose
from appliance.hardware.profiles import best_profile, load_profiles
from appliance.keys import APPLIANCE
from appliance.models.catalog import load_catalog
from appliance.scheduler import Scheduler
from tests.fixtures import ClientFactory
from tests.hardware.fixtures import MACHINES

CATALOG = load_catalog()


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    scheduler = Scheduler()
    yield scheduler
    scheduler.shutdown()


class Fake(ChatModel):
    def __init__(self, name: str, tps: float = 0.0, fail: bool = False) -> None:
        self.info = ModelInfo(name=name, quantization="Q4_K_M")
        self.tps = tps
        self.fail = fail

    def load(self) -> None:
        if self.fail:
            raise RuntimeError("out of memory while loading")

    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        n = request.sampling.max_tokens or 8
        yield GenerationChunk(text="x " * n)
        yield GenerationChunk(
            finish_reason="length",
            usage=Usage(prompt_tokens=10, completion_tokens=n, decode_ms=(n - 1) / self.tps * 1000),
        )


async def test_failing_model_steps_down_one_size(tmp_path: Path, scheduler: Scheduler) -> None:
    facts = probe(MACHINES["rpi5-8gb"].write(tmp_path))
    profile = best_profile(facts, load_profiles())
    first = choose(profile, facts, CATALOG)
    assert first.chat is not None
    result = await calibrate(scheduler, Fake(first.chat.model, fail=True), profile, CATALOG, None)
    assert first.chat.model in result.excluded
    again = choose(profile, facts, CATALOG, excluded=result.excluded)
    assert again.chat is not None and again.chat.model != first.chat.model
    assert again.chat.params <= first.chat.params
    assert any("excluded" in r for r in again.reasons)


async def test_measured_efficiency_and_far_too_slow(tmp_path: Path, scheduler: Scheduler) -> None:
    facts = probe(MACHINES["rpi5-8gb"].write(tmp_path))
    profile = best_profile(facts, load_profiles())
    chosen = choose(profile, facts, CATALOG).chat
    assert chosen is not None
    good = await calibrate(
        scheduler, Fake(chosen.model, tps=chosen.predicted_tps * 0.9), profile, CATALOG, None
    )
    assert good.efficiency is not None and abs(good.efficiency - 0.9 * profile.efficiency) < 0.02
    assert not good.excluded
    slow = await calibrate(
        scheduler, Fake(chosen.model, tps=chosen.predicted_tps * 0.2), profile, CATALOG, None
    )
    assert chosen.model in slow.excluded and "far below" in slow.excluded[chosen.model]


class FakePlugin:
    def __init__(self, model: ChatModel) -> None:
        self.model = model

    @hookimpl
    def register_chat_models(self, register: Any) -> None:
        register(self.model)


async def test_first_start_calibrates_and_keeps_the_result(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    root = MACHINES["rpi5-8gb"].write(tmp_path / "root")
    facts = probe(root)
    profile = best_profile(facts, load_profiles())
    chosen = choose(profile, facts, CATALOG).chat
    assert chosen is not None
    fake = Fake(chosen.model, tps=chosen.predicted_tps * 0.8)
    client = await make_client(
        hardware_root=root,
        calibrate_at_start=True,
        load_plugins=(),
        extra_plugins=(("fake", FakePlugin(fake)),),
    )
    appliance = client.app[APPLIANCE]
    await appliance.drain()
    stored = load_calibration(appliance.settings.home, profile)
    assert stored is not None and stored.model == chosen.model
    assert stored.measured_tps > 0 and stored.efficiency is not None
    data = await (await client.get("/appliance/hardware")).json()
    assert data["calibration"]["model"] == chosen.model
    assert data["profile"]["id"] == "rpi5-8gb"
