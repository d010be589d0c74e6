"""Malformed input never yields a 5xx: every JSON endpoint answers a 4xx naming the problem."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures import ClientFactory

ENDPOINTS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/appliance/tokens",
    "/plugins/presets/",
    "/appliance/rag/collections",
    "/appliance/rag/query",
]
ALWAYS_BAD: list[Any] = [{}, [], "text", 5, None, {"model": 5, "messages": "hi"}]
# Odd but not always invalid (Ollama ignores unknown fields): these must simply never be a 5xx.
ODD: list[Any] = [
    {"model": "echo", "messages": [{"role": "robot", "content": "x"}]},
    {"model": "echo", "messages": [{"content": "x"}]},
    {"model": "echo", "prompt": ["a", "b"], "input": [[1, 2]]},
    {"model": "echo", "messages": [], "options": {"temperature": "hot"}},
    {"model": "echo", "max_tokens": -1, "temperature": 9, "stop": ["a"] * 9},
    {"model": "echo", "keep_alive": "soon", "format": 12},
    {"role": "root", "name": 5, "collection": 1, "query": []},
]


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_malformed_bodies_get_4xx(make_client: ClientFactory, path: str) -> None:
    client = await make_client(load_plugins=("echo", "presets", "rag"), embed_model="echo-embed")
    for body in ALWAYS_BAD + ODD:
        response = await client.post(path, json=body)
        detail = (path, body, response.status, await response.text())
        assert response.status < 500, detail
        if body in ALWAYS_BAD:
            assert 400 <= response.status < 500, detail
        if response.status < 400:
            continue
        data = await response.json()
        message = data["error"] if path.startswith("/api/") else data["error"]["message"]
        assert isinstance(message, str) and message
    raw = await client.post(path, data=b"\xff\xfe{", headers={"Content-Type": "application/json"})
    assert raw.status == 400
