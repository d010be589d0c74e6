"""/metrics for IT's monitoring (Prometheus text, parsed back with prometheus-client), for admins
and the metrics role only; and the audit log over HTTP, filtered."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from appliance.keys import APPLIANCE
from tests.fixtures import ClientFactory, bearer, new_token


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_count_requests_tokens_and_history(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0")
    admin, user, scraper = (new_token(client, r) for r in ("admin", "user", "metrics"))
    body = {"model": "echo", "messages": [{"role": "user", "content": "one two three"}]}
    for _ in range(3):
        assert (
            await client.post("/v1/chat/completions", json=body, headers=bearer(user))
        ).status == 200
    assert (await client.get("/metrics", headers=bearer(user))).status == 403
    assert (await client.get("/appliance/tokens", headers=bearer(scraper))).status == 403
    scraped = await client.get("/metrics", headers=bearer(scraper))
    assert scraped.status == 200 and scraped.headers["Content-Type"].startswith("text/plain")
    found = samples(await scraped.text())
    route = (("method", "POST"), ("route", "/v1/chat/completions"), ("status", "200"))
    assert found[("appliance_requests_total", route)] == 3
    assert found[("appliance_request_seconds_count", (("route", "/v1/chat/completions"),))] == 3
    assert found[("appliance_generated_tokens_total", (("model", "echo"),))] > 0
    assert found[("appliance_history_rows", (("table", "conversations"),))] == 3
    families = {f.name for f in text_string_to_metric_families(await scraped.text())}
    assert {"appliance_model_loads", "appliance_model_slots_busy"} <= families
    assert (await client.get("/metrics", headers=bearer(admin))).status == 200


async def test_the_audit_log_over_http(make_client: ClientFactory) -> None:
    client = await make_client(host="0.0.0.0")
    admin, user = new_token(client, "admin"), new_token(client, "user")
    started = time.time()
    await client.get("/v1/models", headers=bearer(user))
    await client.post(
        "/appliance/tokens", json={"role": "user", "name": "x"}, headers=bearer(admin)
    )
    await client.app[APPLIANCE].drain()
    assert (await client.get("/appliance/audit", headers=bearer(user))).status == 403
    created = await (
        await client.get("/appliance/audit", params={"action": "token."}, headers=bearer(admin))
    ).json()
    assert [r["action"] for r in created["audit"]] == ["token.created"]
    requests = await (
        await client.get(
            "/appliance/audit",
            params={"action": "request", "since": str(started), "limit": "50"},
            headers=bearer(admin),
        )
    ).json()
    assert any(r["resource"] == "GET /v1/models" and r["role"] == "user" for r in requests["audit"])
    assert (
        await client.get("/appliance/audit", params={"since": "x"}, headers=bearer(admin))
    ).status == 400
