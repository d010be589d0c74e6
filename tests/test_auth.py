from __future__ import annotations

import stat

import pytest

from appliance.app import create_app
from appliance.auth import hash_token
from appliance.errors import SettingsError
from appliance.keys import APPLIANCE
from tests.fixtures import ClientFactory, bearer, make_settings, new_token

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}


async def test_loopback_without_tokens_runs_open(make_client: ClientFactory) -> None:
    client = await make_client()
    assert (await client.post("/v1/chat/completions", json=CHAT)).status == 200
    assert (await client.get("/appliance/plugins")).status == 200
    record = await (await client.get("/.well-known/appliance.json")).json()
    assert record["auth"] == "none"


async def test_lan_box_requires_a_token(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0")
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status == 401
    body = await response.json()
    assert body["error"]["type"] == "authentication_error"
    assert "Bearer" in body["error"]["message"]
    assert (await client.get("/appliance/health")).status == 200
    record = await (await client.get("/.well-known/appliance.json")).json()
    assert record["auth"] == "required"


async def test_bad_token_is_refused(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0")
    response = await client.get("/v1/models", headers=bearer("apl_not-a-real-token"))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "invalid_api_key"


async def test_user_and_admin_roles(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0")
    user, admin = new_token(client, "user"), new_token(client, "admin")
    chat = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(user))
    assert chat.status == 200
    denied = await client.get("/appliance/plugins", headers=bearer(user))
    assert denied.status == 403
    assert (await denied.json())["error"]["type"] == "permission_error"
    allowed = await client.get("/appliance/plugins", headers=bearer(admin))
    assert allowed.status == 200


async def test_revoked_token_stops_working(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0")
    admin = new_token(client, "admin")
    created = await client.post(
        "/appliance/tokens", json={"role": "user", "name": "alice"}, headers=bearer(admin)
    )
    assert created.status == 201
    row = await created.json()
    assert (await client.get("/v1/models", headers=bearer(row["token"]))).status == 200
    revoked = await client.delete(f"/appliance/tokens/{row['id']}", headers=bearer(admin))
    assert revoked.status == 200
    assert (await client.get("/v1/models", headers=bearer(row["token"]))).status == 401


async def test_tokens_are_stored_only_as_hashes(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0")
    token = new_token(client, "user")
    appliance = client.app[APPLIANCE]
    rows = appliance.db.read_sync(lambda db: list(db["tokens"].rows))
    assert all(token not in str(row.values()) for row in rows)
    assert hash_token(token) in {row["hash"] for row in rows}


async def test_loopback_with_tokens_requires_them(make_client: ClientFactory) -> None:
    client = await make_client()
    new_token(client, "user")
    assert (await client.get("/v1/models")).status == 401


async def test_first_start_on_the_lan_hands_over_an_admin_token_outside_the_journal(
    make_client: ClientFactory,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await make_client(host="0.0.0.0")
    token_file = client.app[APPLIANCE].settings.home / "first-admin-token"
    token = token_file.read_text().strip()
    assert token.startswith("apl_") and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    captured = capsys.readouterr()  # stdout is not a terminal here, as under systemd
    assert token not in captured.out + captured.err + caplog.text
    assert str(token_file) in caplog.text
    assert (await client.get("/appliance/plugins", headers=bearer(token))).status == 200
    appliance = client.app[APPLIANCE]
    admins = appliance.db.read_sync(lambda db: db["tokens"].count_where("role = 'admin'"))
    assert admins == 1


async def test_lan_box_refuses_to_start_without_admin_token(aiohttp_client, home) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(home, host="0.0.0.0", generate_admin_token=False))
    with pytest.raises(SettingsError, match="no admin token"):
        await aiohttp_client(app)


async def test_requests_are_audited(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0")
    user = new_token(client, "user")
    await client.get("/v1/models", headers=bearer(user))
    await client.get("/appliance/plugins", headers=bearer(user))
    appliance = client.app[APPLIANCE]
    await appliance.drain()
    rows = appliance.db.read_sync(lambda db: list(db["audit"].rows_where(order_by="id")))
    requests = [(r["resource"], r["status"], r["role"]) for r in rows if r["action"] == "request"]
    assert ("GET /v1/models", 200, "user") in requests
    assert ("GET /appliance/plugins", 403, "user") in requests
    assert all(r["address"] for r in rows if r["action"] == "request")


async def test_guessing_tokens_is_braked_per_address_and_valid_tokens_pass(
    make_client: ClientFactory,
) -> None:
    client = await make_client(load_plugins=("echo",))
    good = new_token(client, "user")
    statuses = []
    for i in range(14):
        response = await client.get("/v1/models", headers={"Authorization": f"Bearer apl_wrong{i}"})
        statuses.append(response.status)
    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.json())["error"]["code"] == "too_many_failed_attempts"
    ok = await client.get("/v1/models", headers={"Authorization": f"Bearer {good}"})
    assert ok.status == 200
    audit = client.app[APPLIANCE].db.write_sync(
        lambda db: [r["status"] for r in db.table("audit").rows if r["status"] in (401, 429)]
    )
    assert audit.count(429) >= 1 and audit.count(401) >= 10
