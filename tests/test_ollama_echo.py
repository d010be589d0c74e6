"""The Ollama API's shapes and rules with the echo model (no model file needed)."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient

from appliance.errors import BadRequest
from appliance.http.ollama_schema import FOREVER_S, keep_alive_seconds
from tests.fixtures import ClientFactory, bearer, new_token


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5m", 300.0),
        ("1h", 3600.0),
        ("0", 0.0),
        (0, 0.0),
        (30, 30.0),
        ("250ms", 0.25),
        (-1, FOREVER_S),
        ("-1m", FOREVER_S),
        (None, None),
    ],
)
def test_keep_alive_durations(value: object, seconds: float | None) -> None:
    assert keep_alive_seconds(value) == seconds


def test_bad_keep_alive_is_a_clear_error() -> None:
    with pytest.raises(BadRequest, match="duration"):
        keep_alive_seconds("soon")


async def test_errors_are_ollama_shaped(client: TestClient) -> None:  # type: ignore[type-arg]
    bad = await client.post(
        "/api/chat", data=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert bad.status == 400
    assert isinstance((await bad.json())["error"], str)
    unknown = await client.post("/api/chat", json={"model": "nope", "messages": []})
    assert unknown.status == 404
    assert "not found" in (await unknown.json())["error"]
    missing = await client.post("/api/generate", json={"prompt": "hi"})
    assert missing.status == 400 and "model" in (await missing.json())["error"]


async def test_latest_tag_and_old_name_field(client: TestClient) -> None:  # type: ignore[type-arg]
    reply = await (
        await client.post(
            "/api/chat",
            json={
                "name": "echo:latest",
                "messages": [{"role": "user", "content": "a b"}],
                "stream": False,
            },
        )
    ).json()
    assert reply["message"] == {"role": "assistant", "content": "a b"}
    assert reply["done"] is True and reply["eval_count"] == 2
    tags = await (await client.get("/api/tags")).json()
    assert "echo:latest" in [m["name"] for m in tags["models"]]


async def test_stream_defaults_to_true_with_one_done(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.post("/api/generate", json={"model": "echo", "prompt": "one two three"})
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(raw) async for raw in response.content]
    assert [line["done"] for line in lines] == [False, False, False, True]
    assert "".join(line["response"] for line in lines) == "one two three"
    assert lines[-1]["done_reason"] == "stop"


async def test_model_writes_are_refused_with_directions(client: TestClient) -> None:  # type: ignore[type-arg]
    for method, path in [
        ("POST", "/api/pull"),
        ("POST", "/api/create"),
        ("POST", "/api/copy"),
        ("POST", "/api/push"),
        ("DELETE", "/api/delete"),
    ]:
        response = await client.request(method, path, json={"model": "llama3.2"})
        assert response.status == 400, path
        assert "appliance models" in (await response.json())["error"]


async def test_root_and_head_probes(client: TestClient) -> None:  # type: ignore[type-arg]
    root = await client.get("/")
    assert await root.text() == "Ollama is running"
    assert (await client.head("/")).status == 200
    assert (await client.head("/api/version")).status == 200


async def test_auth_and_history_apply_to_ollama(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0")
    body = {"model": "echo", "messages": [{"role": "user", "content": "hello"}], "stream": False}
    refused = await client.post("/api/chat", json=body)
    assert refused.status == 401 and isinstance((await refused.json())["error"], str)
    token = new_token(client, "user")
    assert (await client.post("/api/chat", json=body, headers=bearer(token))).status == 200
    history = await (await client.get("/appliance/conversations", headers=bearer(token))).json()
    assert [c["api"] for c in history["conversations"]] == ["ollama"]
