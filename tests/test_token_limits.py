"""Limits IT sets per token: models, requests a minute, tokens a day, expiry. Beyond them: 403 or
429 with Retry-After, before anything runs, audited; other tokens are not affected."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.app import create_app
from appliance.cli.main import cli
from appliance.keys import APPLIANCE
from appliance.quotas import parse_expiry
from tests.fixtures import ClientFactory, bearer, make_settings, new_token

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "one two three four"}]}


async def make_token(client, admin: str, **limits: object) -> str:  # type: ignore[no-untyped-def]
    response = await client.post(
        "/appliance/tokens",
        json={"role": "user", "name": "limited", **limits},
        headers=bearer(admin),
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["token"])


async def test_a_token_uses_only_its_models_on_both_apis(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0")
    admin = new_token(client, "admin")
    token = await make_token(client, admin, models=["echo"])
    assert (
        await client.post("/v1/chat/completions", json=CHAT, headers=bearer(token))
    ).status == 200
    for path, body in (
        ("/v1/embeddings", {"model": "echo-embed", "input": "hi"}),
        ("/api/embed", {"model": "echo-embed", "input": "hi"}),
    ):
        refused = await client.post(path, json=body, headers=bearer(token))
        assert refused.status == 403, path
        assert "may not use the model 'echo-embed'" in await refused.text()
    await client.app[APPLIANCE].drain()
    limited = client.app[APPLIANCE].db.read_sync(
        lambda db: list(db["audit"].rows_where("action = 'token.limited'"))
    )
    assert len(limited) == 2 and all('"code": "model_not_allowed"' in r["detail"] for r in limited)
    listed = await (await client.get("/appliance/tokens", headers=bearer(admin))).json()
    row = next(t for t in listed["tokens"] if t["name"] == "limited")
    assert row["models"] == ["echo"] and row["rpm"] is None


async def test_requests_a_minute_answer_429_with_retry_after(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0")
    admin = new_token(client, "admin")
    token = await make_token(client, admin, rpm=2)
    other = new_token(client, "user")
    statuses = []
    for _ in range(3):
        response = await client.post(
            "/api/chat", json={**CHAT, "stream": True}, headers=bearer(token)
        )
        statuses.append(response.status)
        await response.read()
    assert statuses == [200, 200, 429]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "2 requests a minute" in (await response.json())["error"]
    assert (await client.post("/api/chat", json=CHAT, headers=bearer(other))).status == 200


async def test_tokens_a_day_are_counted_and_survive_a_restart(
    aiohttp_client,
    home: Path,  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings(home, host="0.0.0.0")
    client = await aiohttp_client(create_app(settings))
    admin = new_token(client, "admin")
    token = await make_token(client, admin, tokens_per_day=6)
    first = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(token))
    used = (await first.json())["usage"]["total_tokens"]
    assert first.status == 200 and used >= 6
    refused = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(token))
    assert refused.status == 429
    body = await refused.json()
    assert body["error"]["code"] == "tokens_per_day_exceeded"
    midnight = (int(time.time()) // 86400 + 1) * 86400
    assert abs(int(refused.headers["Retry-After"]) - (midnight - time.time())) < 5
    await client.close()
    again = await aiohttp_client(create_app(settings))
    assert (
        await again.post("/v1/chat/completions", json=CHAT, headers=bearer(token))
    ).status == 429


async def test_an_expired_token_is_refused(make_client: ClientFactory) -> None:
    from appliance.auth import create_token
    from appliance.quotas import TokenLimits

    client = await make_client(host="0.0.0.0")
    appliance = client.app[APPLIANCE]
    token, _ = appliance.db.write_sync(
        lambda db: create_token(db, "user", "brief", limits=TokenLimits(expires_at=time.time() + 1))
    )
    assert (await client.get("/v1/models", headers=bearer(token))).status == 200
    await asyncio.sleep(1.2)
    expired = await client.get("/v1/models", headers=bearer(token))
    assert expired.status == 401 and "expired" in await expired.text()


def test_expiry_formats() -> None:
    now = 1_000_000.0
    assert parse_expiry("30d", now) == now + 30 * 86400
    assert parse_expiry("12h", now) == now + 12 * 3600
    assert parse_expiry("2w", now) == now + 14 * 86400
    assert parse_expiry("2099-01-31") > time.time()
    for bad, at in (("0d", now), ("soon", now), ("-1d", now), ("2001-01-01", None)):
        with pytest.raises(Exception, match="expir"):
            parse_expiry(bad, at)


def test_the_cli_creates_limited_tokens_and_lists_their_limits(tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(tmp_path / "home")
    made = runner.invoke(
        cli,
        [
            "tokens",
            "create",
            "--role",
            "user",
            "--name",
            "intern",
            "--models",
            "echo",
            "--rpm",
            "5",
            "--tokens-per-day",
            "1000",
            "--expires",
            "30d",
            "--home",
            home,
        ],
    )
    assert made.exit_code == 0, made.output
    listed = runner.invoke(cli, ["tokens", "list", "--home", home])
    line = next(row for row in listed.output.splitlines() if "intern" in row)
    assert "echo" in line and " 5 " in line and "1000" in line
    refused = runner.invoke(
        cli, ["tokens", "create", "--role", "user", "--expires", "yesterday", "--home", home]
    )
    assert refused.exit_code != 0 and "expires" in refused.output
