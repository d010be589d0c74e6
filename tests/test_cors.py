"""Browser-based clients: preflight answered on /v1 and /api, Access-Control-* on every response
to an allowed origin (streams and errors too), none for others, no credentials by wildcard."""

from __future__ import annotations

from tests.fixtures import ClientFactory

PAGE = "http://localhost:3000"
PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def test_preflight_and_headers_for_a_local_page(make_client: ClientFactory) -> None:
    client = await make_client()
    for path in ("/v1/chat/completions", "/api/chat", "/api/tags"):
        preflight = await client.options(path, headers=PREFLIGHT)
        assert preflight.status == 204, path
        assert preflight.headers["Access-Control-Allow-Origin"] == PAGE
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert preflight.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
        assert "Access-Control-Allow-Credentials" not in preflight.headers  # a pattern matched
    listed = await client.get("/v1/models", headers={"Origin": PAGE})
    assert listed.headers["Access-Control-Allow-Origin"] == PAGE
    assert "X-Request-Id" in listed.headers["Access-Control-Expose-Headers"]
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    stream = await client.post("/api/chat", json=body, headers={"Origin": PAGE})
    assert stream.status == 200 and stream.headers["Access-Control-Allow-Origin"] == PAGE
    await stream.read()
    missing = await client.post("/v1/chat/completions", json={}, headers={"Origin": PAGE})
    assert missing.status == 400 and missing.headers["Access-Control-Allow-Origin"] == PAGE


async def test_other_origins_get_nothing(make_client: ClientFactory) -> None:
    client = await make_client()
    evil = {**PREFLIGHT, "Origin": "https://evil.example"}
    refused = await client.options("/v1/chat/completions", headers=evil)
    assert refused.status == 403 and "cors_origins" in await refused.text()
    listed = await client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert listed.status == 200 and "Access-Control-Allow-Origin" not in listed.headers
    assert "Origin" in listed.headers.getall("Vary")


async def test_wildcard_never_allows_credentials_and_exact_origins_do(
    make_client: ClientFactory,
) -> None:
    client = await make_client(cors_origins=("*", "https://chat.office.lan"))
    anyone = await client.get("/api/tags", headers={"Origin": "https://elsewhere.example"})
    assert anyone.headers["Access-Control-Allow-Origin"] == "https://elsewhere.example"
    assert "Access-Control-Allow-Credentials" not in anyone.headers
    named = await client.get("/api/tags", headers={"Origin": "https://chat.office.lan"})
    assert named.headers["Access-Control-Allow-Credentials"] == "true"
