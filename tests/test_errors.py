from __future__ import annotations

from tests.fixtures import ClientFactory


async def test_bad_json_on_v1_is_openai_shaped(make_client: ClientFactory) -> None:
    client = await make_client()
    response = await client.post(
        "/v1/chat/completions", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    body = await response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "not valid JSON" in body["error"]["message"]


async def test_missing_field_names_the_param(make_client: ClientFactory) -> None:
    client = await make_client()
    response = await client.post("/v1/chat/completions", json={"model": "echo"})
    assert response.status == 400
    body = await response.json()
    assert body["error"]["param"] == "messages"


async def test_non_object_body_is_rejected(make_client: ClientFactory) -> None:
    client = await make_client()
    response = await client.post("/v1/chat/completions", json=[1, 2])
    assert response.status == 400


async def test_unknown_route_is_json_404_in_each_family(make_client: ClientFactory) -> None:
    client = await make_client()
    openai = await client.get("/v1/nothing-here")
    assert openai.status == 404
    assert (await openai.json())["error"]["type"] == "not_found_error"
    ollama = await client.get("/api/nothing-here")
    assert ollama.status == 404
    body = await ollama.json()
    assert isinstance(body["error"], str)
    other = await client.get("/nowhere")
    assert isinstance((await other.json())["error"], dict)


async def test_method_not_allowed_in_ollama_shape(make_client: ClientFactory) -> None:
    client = await make_client()
    response = await client.delete("/api/version")
    assert response.status == 405
    assert isinstance((await response.json())["error"], str)


async def test_oversize_json_body_is_413(make_client: ClientFactory) -> None:
    client = await make_client(max_json_bytes=4096)
    big = {"model": "echo", "messages": [{"role": "user", "content": "x" * 10_000}]}
    response = await client.post("/v1/chat/completions", json=big)
    assert response.status == 413
    assert "limit" in (await response.json())["error"]["message"]


async def test_oversize_chunked_body_is_413(make_client: ClientFactory) -> None:
    client = await make_client(max_json_bytes=4096)

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 1000

    response = await client.post("/v1/chat/completions", data=chunks())
    assert response.status == 413


async def test_unknown_model_is_404(make_client: ClientFactory) -> None:
    client = await make_client()
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status == 404
    body = await response.json()
    assert body["error"]["code"] == "model_not_found"
    assert "echo" in body["error"]["message"]


async def test_request_id_is_echoed_or_made(make_client: ClientFactory) -> None:
    client = await make_client()
    mine = await client.get("/appliance/health", headers={"X-Request-Id": "abc-123"})
    assert mine.headers["X-Request-Id"] == "abc-123"
    made = await client.get("/appliance/health")
    assert made.headers["X-Request-Id"].startswith("req_")
    hostile = await client.get("/appliance/health", headers={"X-Request-Id": "a b\tc"})
    assert hostile.headers["X-Request-Id"].startswith("req_")
    chat = {"model": "echo", "messages": [{"role": "user", "content": "x"}], "stream": True}
    for path in ("/v1/chat/completions", "/api/chat", "/api/generate"):
        body = chat if path != "/api/generate" else {"model": "echo", "prompt": "x"}
        wanted = "s-" + path.replace("/", "-")
        stream = await client.post(path, json=body, headers={"X-Request-Id": wanted})
        assert stream.status == 200 and stream.headers["X-Request-Id"] == wanted, path
        await stream.read()


async def test_n_other_than_one_is_400(make_client: ClientFactory) -> None:
    client = await make_client()
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "echo", "n": 2, "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "n"
