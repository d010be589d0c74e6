"""mDNS advertise and browse, bound to 127.0.0.1 only (never the real interface)."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from appliance.discovery.browse import discover
from appliance.discovery.mdns import TXT_LIMIT, Advertiser, advertised_addresses, fit_txt
from appliance.discovery.zeroconf import Zeroconf
from appliance.keys import APPLIANCE
from tests.fixtures import ClientFactory

LOOPBACK = ["127.0.0.1"]


def test_txt_entries_fit_in_255_bytes() -> None:
    models = ",".join(f"model-number-{i}:7b" for i in range(40))
    fitted = fit_txt({"models": models, "id": "abc", "x" * 300: "dropped"})
    assert all(len(k.encode()) + 1 + len(v.encode()) <= TXT_LIMIT for k, v in fitted.items())
    assert fitted["id"] == "abc"
    assert fitted["models"].startswith("model-number-0:7b,")
    assert all(name.endswith(":7b") for name in fitted["models"].split(","))
    assert not any(k.startswith("xxx") for k in fitted)


def test_addresses_follow_the_bind() -> None:
    assert advertised_addresses("127.0.0.1") == ["127.0.0.1"]
    assert advertised_addresses("localhost") == ["127.0.0.1"]
    assert advertised_addresses("10.1.2.3") == ["10.1.2.3"]
    assert "127.0.0.1" not in advertised_addresses("0.0.0.0") or advertised_addresses(
        "0.0.0.0"
    ) == ["127.0.0.1"]


async def test_announce_browse_verify_rename_and_goodbye(make_client: ClientFactory) -> None:
    first: TestClient = await make_client(instance_name="Front Office")  # type: ignore[type-arg]
    appliance = first.app[APPLIANCE]
    port = first.server.port
    assert port is not None
    one = Advertiser(appliance, "127.0.0.1", port)
    await one.start()
    try:
        boxes = await discover(listen_s=1.5, interfaces=LOOPBACK)
        box = next(b for b in boxes if b.id == appliance.id)
        assert box.name == "Front Office"
        assert box.port == port and box.addresses == ["127.0.0.1"]
        assert box.txt["api"] == "/v1" and box.txt["ollama"] == "/api"
        assert box.auth == "none" and box.profile == appliance.profile.id
        assert "echo" in box.models
        assert box.reachable and box.record is not None
        assert box.record["id"] == appliance.id and box.record["name"] == "Front Office"

        other_box = Zeroconf("127.0.0.1")  # a second box on the LAN has its own responder
        two = Advertiser(appliance, "127.0.0.1", port, zeroconf=other_box)
        await two.start()
        try:
            assert two.name != "Front Office" and two.name.startswith("Front Office")
        finally:
            await two.stop()
            await other_box.close()
    finally:
        await one.stop()
    await asyncio.sleep(0.5)
    after = await discover(listen_s=1.0, interfaces=LOOPBACK, check=False)
    assert all(b.id != appliance.id for b in after)


async def test_unreachable_box_is_marked(make_client: ClientFactory) -> None:
    client: TestClient = await make_client(instance_name="Ghost")  # type: ignore[type-arg]
    appliance = client.app[APPLIANCE]
    advertiser = Advertiser(appliance, "127.0.0.1", 9)  # nothing listens on the discard port
    await advertiser.start()
    try:
        boxes = await discover(listen_s=1.5, interfaces=LOOPBACK)
        ghost = next(b for b in boxes if b.name == "Ghost")
        assert not ghost.reachable and ghost.error
    finally:
        await advertiser.stop()
