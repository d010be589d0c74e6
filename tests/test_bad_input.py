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


DEEP = b'{"model": "echo", "messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
HUGE_INT = b'{"model": "echo", "max_tokens": ' + b"9" * 5_000 + b"}"
SURROGATE = (
    b'{"model": "echo", "messages": [{"role": "user", "content": "\\ud800"}], "prompt": "\\ud800"}'
)
CONSTANTS = b'{"model": "echo", "temperature": NaN, "keep_alive": Infinity}'


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_hostile_json_gets_a_clear_400(make_client: ClientFactory, path: str) -> None:
    client = await make_client(load_plugins=("echo", "presets", "rag"), embed_model="echo-embed")
    for raw in (DEEP, HUGE_INT, SURROGATE, CONSTANTS):
        response = await client.post(path, data=raw, headers={"Content-Type": "application/json"})
        assert response.status == 400, (path, raw[:60], response.status, await response.text())


def multipart(boundary: str, body: bytes) -> dict[str, Any]:
    return {
        "data": body,
        "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    }


MALFORMED_MULTIPART: list[dict[str, Any]] = [
    {"data": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}},
    multipart("x", b""),
    multipart('""', b"--\r\n"),
    multipart(
        "x", b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
    ),
    multipart("x", b"\x00\x01garbage\xff" * 50),
    multipart(
        "x",
        b'--x\r\nContent-Disposition: form-data; name="model"\r\n\r\n\xff\xfe\r\n--x--\r\n',
    ),
    multipart(
        "x",
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="\xff\xfe.wav"\r\n\r\n'
        b"RIFF\r\n--x--\r\n",
    ),
]


@pytest.mark.parametrize(
    "path",
    ["/v1/audio/transcriptions", "/v1/audio/translations", "/appliance/plugins"],
)
async def test_malformed_multipart_gets_a_4xx(make_client: ClientFactory, path: str) -> None:
    client = await make_client(load_plugins=("echo",))
    for case in MALFORMED_MULTIPART:
        response = await client.post(path, **case)
        detail = (path, case["data"][:40], response.status, await response.text())
        assert 400 <= response.status < 500, detail


async def test_oversize_upload_is_413_and_nul_in_a_search_is_fine(
    make_client: ClientFactory,
) -> None:
    client = await make_client(load_plugins=("echo",), max_body_bytes=4096)
    form = aiohttp_form(b"x" * 10_000)
    response = await client.post("/appliance/plugins", data=form)
    assert response.status == 413, await response.text()
    search = await client.get("/appliance/conversations", params={"q": "hello\x00world"})
    assert search.status == 200
    empty = await client.post(
        "/v1/completions", json={"model": "echo", "prompt": "", "max_tokens": 4}
    )
    assert empty.status < 500


def aiohttp_form(data: bytes) -> Any:
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("sha256", "0" * 64)
    form.add_field("file", data, filename="big-1.0-py3-none-any.whl")
    return form
