from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from appliance_presets.model import PresetModel

from appliance import ChatModel, ChatRequest, GenerationChunk, ModelInfo, Usage, hookimpl
from appliance.capabilities.chat import SamplingOptions
from appliance.errors import Forbidden
from appliance.keys import APPLIANCE
from tests.fixtures import ClientFactory, bearer, new_token

PRESET = {
    "name": "support-bot",
    "base": "echo",
    "system": "You answer IT questions briefly.",
    "parameters": {"temperature": 0.2, "num_predict": 2},
}


async def test_preset_is_a_model_in_both_apis_and_survives_restart(
    make_client: ClientFactory, home: Path
) -> None:
    client = await make_client(load_plugins=("echo", "presets"))
    created = await client.post("/plugins/presets/", json=PRESET)
    assert created.status == 201, await created.text()
    models = await (await client.get("/v1/models")).json()
    assert "support-bot" in [m["id"] for m in models["data"]]
    tags = await (await client.get("/api/tags")).json()
    assert "support-bot:latest" in [m["name"] for m in tags["models"]]
    reply = await (
        await client.post(
            "/v1/chat/completions",
            json={
                "model": "support-bot",
                "messages": [{"role": "user", "content": "one two three"}],
            },
        )
    ).json()
    assert reply["choices"][0]["message"]["content"] == "one two"  # num_predict 2 applied
    await client.close()
    again = await make_client(load_plugins=("echo", "presets"))
    listed = await (await again.get("/plugins/presets/")).json()
    assert [p["name"] for p in listed["presets"]] == ["support-bot"]
    assert (await again.delete("/plugins/presets/support-bot")).status == 200
    assert "support-bot" not in again.app[APPLIANCE].registry.chat


async def test_bad_presets_and_roles(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0", load_plugins=("echo", "presets"))
    admin, user = new_token(client, "admin"), new_token(client, "user")
    refused = await client.post("/plugins/presets/", json=PRESET, headers=bearer(user))
    assert refused.status == 403
    unknown_base = await client.post(
        "/plugins/presets/", json={**PRESET, "base": "nope"}, headers=bearer(admin)
    )
    assert unknown_base.status == 404
    bad_param = await client.post(
        "/plugins/presets/", json={**PRESET, "parameters": {"x": 1}}, headers=bearer(admin)
    )
    assert bad_param.status == 400 and "unknown parameters" in (await bad_param.text())
    clash = await client.post(
        "/plugins/presets/", json={**PRESET, "name": "echo"}, headers=bearer(admin)
    )
    assert clash.status == 400
    assert (await client.get("/plugins/presets/", headers=bearer(user))).status == 200
    assert (await client.get("/plugins/presets/")).status == 401


class Recorder(ChatModel):
    info = ModelInfo(name="base")

    def __init__(self) -> None:
        self.seen: list[ChatRequest] = []

    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        self.seen.append(request)
        yield GenerationChunk(finish_reason="stop", usage=Usage())


def test_preset_adds_system_prompt_and_defaults_without_overriding_the_request() -> None:
    base = Recorder()
    preset = PresetModel("p", base, "Be brief.", {"temperature": 0.1, "stop": ["END"]})
    assert preset.backend is base
    list(preset.chat(ChatRequest([{"role": "user", "content": "hi"}]), threading.Event()))
    seen = base.seen[-1]
    assert seen.messages[0] == {"role": "system", "content": "Be brief."}
    assert seen.sampling.temperature == 0.1 and seen.sampling.stop == ("END",)
    own = ChatRequest(
        [{"role": "system", "content": "mine"}, {"role": "user", "content": "x"}],
        SamplingOptions(temperature=0.7),
    )
    list(preset.chat(own, threading.Event()))
    assert base.seen[-1].messages[0]["content"] == "mine"
    assert base.seen[-1].sampling.temperature == 0.7


class Undeclared:
    @hookimpl
    def register_routes(self, appliance: Any) -> None:
        return None


async def test_a_plugin_without_the_permission_cannot_add_models(
    make_client: ClientFactory,
) -> None:
    client = await make_client(extra_plugins=(("sneaky", Undeclared()),))
    appliance = client.app[APPLIANCE]
    with pytest.raises(Forbidden, match=r"models\.register"):
        appliance.add_chat_model("sneaky", PresetModel("x", Recorder(), "", {}))
