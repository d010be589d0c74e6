"""A cited answer from the real default models (SmolLM2 + all-MiniLM) on a tiny collection."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from appliance.app import create_app
from appliance.keys import APPLIANCE
from tests.fixtures import make_settings

pytestmark = pytest.mark.model
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
async def client(aiohttp_client: Any, home: Path, tmp_path: Path) -> TestClient:  # type: ignore[type-arg]
    settings = make_settings(
        home, load_plugins=("llama", "rag"), models_dir=REPO / ".cache" / "models", chat_ctx=2048
    )
    client = await aiohttp_client(create_app(settings))
    docs = tmp_path / "kb"
    docs.mkdir()
    (docs / "wifi.md").write_text(
        "# Guest Wi-Fi\n\nThe guest Wi-Fi network is called Harbour-Guest."
        " Its password is printed on the kitchen fridge.\n"
    )
    (docs / "printers.md").write_text(
        "# Printers\n\nThe printer on the second floor is called "
        "Magpie. Spare toner is kept in room 204.\n"
    )
    (docs / "holidays.md").write_text(
        "# Holidays\n\nThe office is closed from 24 December to 2 January.\n"
    )
    await client.post("/appliance/rag/collections", json={"name": "kb", "paths": [str(docs)]})
    for _ in range(200):
        status = await (await client.get("/appliance/rag/collections/kb")).json()
        if status["status"] == "ready":
            break
        await asyncio.sleep(0.05)
    return client


async def test_hybrid_search_ranks_the_right_file(client: TestClient) -> None:  # type: ignore[type-arg]
    hits = await (
        await client.post(
            "/appliance/rag/query",
            json={"collection": "kb", "query": "Where is the ink cartridge stock kept?"},
        )
    ).json()
    assert hits["results"][0]["path"].endswith("printers.md")


async def test_chat_answers_from_the_collection_with_citations(client: TestClient) -> None:  # type: ignore[type-arg]
    body = {
        "model": "smollm2:135m",
        "rag": "kb",
        "temperature": 0,
        "max_tokens": 60,
        "messages": [{"role": "user", "content": "What is the guest Wi-Fi network called?"}],
    }
    response = await client.post("/v1/chat/completions", json=body)
    reply = await response.json()
    assert "Harbour-Guest" in reply["choices"][0]["message"]["content"]
    assert reply["citations"][0]["source"].endswith("wifi.md")
    conv = await (
        await client.get(f"/appliance/conversations/{response.headers['X-Conversation-Id']}")
    ).json()
    meta = json.loads(conv["messages"][-1]["meta"])
    assert meta["citations"][0]["source"].endswith("wifi.md")
    ollama = await (await client.post("/api/chat", json={**body, "stream": False})).json()
    assert "Harbour-Guest" in ollama["message"]["content"]
    assert client.app[APPLIANCE].registry.loaders.names()
