"""Model files over HTTP for admins: fetch from a stick into the store (a task with progress),
verify every file, remove one; a served model is not removed under the box; users may not."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from appliance.keys import APPLIANCE
from tests.fixtures import ClientFactory, bearer, new_token

STICK = Path(__file__).resolve().parents[1] / ".cache" / "models"


async def finished(client: Any, admin: str, task_id: str) -> dict[str, Any]:
    for _ in range(600):
        listed = await (await client.get("/appliance/models/tasks", headers=bearer(admin))).json()
        task = next(t for t in listed["tasks"] if t["id"] == task_id)
        if task["status"] != "running":
            return dict(task)
        await asyncio.sleep(0.1)
    raise AssertionError("the task did not finish")


async def test_fetch_verify_and_remove_over_http(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    client = await make_client(host="0.0.0.0", models_dir=tmp_path / "store")
    admin, user = new_token(client, "admin"), new_token(client, "user")
    weights = next(STICK.glob("smollm2*/*.gguf"))
    body = {"id": "smollm2:135m", "source": str(weights)}
    assert (
        await client.post("/appliance/models/fetch", json=body, headers=bearer(user))
    ).status == 403
    started = await client.post("/appliance/models/fetch", json=body, headers=bearer(admin))
    assert started.status == 202
    task = await finished(client, admin, (await started.json())["id"])
    assert task["status"] == "done" and task["done"] == task["total"] == 1, task
    stored = await (await client.get("/appliance/models", headers=bearer(admin))).json()
    assert [s["id"] for s in stored["stored"]] == ["smollm2:135m"]
    check = await client.post("/appliance/models/verify", headers=bearer(admin))
    verified = await finished(client, admin, (await check.json())["id"])
    assert verified["status"] == "done" and verified["done"] == 1
    wrong = await client.post(
        "/appliance/models/fetch",
        json={"id": "smollm2:135m", "source": str(tmp_path / "absent.gguf")},
        headers=bearer(admin),
    )
    kept = await finished(client, admin, (await wrong.json())["id"])
    assert kept["status"] == "done"  # already in the store with the right hash: not fetched again
    gone = await client.post(
        "/appliance/models/fetch",
        json={"id": "qwen2.5:0.5b", "source": str(tmp_path / "absent.gguf")},
        headers=bearer(admin),
    )
    failed = await finished(client, admin, (await gone.json())["id"])
    assert failed["status"] == "failed" and "does not exist" in failed["error"]
    served = await client.delete("/appliance/models/echo", headers=bearer(admin))
    assert served.status == 404  # echo is not a catalogued model file
    removed = await client.delete("/appliance/models/smollm2:135m", headers=bearer(admin))
    assert removed.status == 200 and not list((tmp_path / "store").rglob("*.gguf"))
    await client.app[APPLIANCE].drain()
    actions = client.app[APPLIANCE].db.read_sync(
        lambda db: [r["action"] for r in db["audit"].rows_where("action like 'model.%'")]
    )
    assert {"model.fetch_started", "model.fetch", "model.verify", "model.removed"} <= set(actions)


async def test_a_served_model_is_not_removed(make_client: ClientFactory) -> None:
    client = await make_client(
        host="0.0.0.0", load_plugins=("llama",), models_dir=STICK, calibrate_at_start=False
    )
    admin = new_token(client, "admin")
    refused = await client.delete("/appliance/models/smollm2:135m", headers=bearer(admin))
    assert refused.status == 409 and "served" in await refused.text()
    assert list(STICK.glob("smollm2*/*.gguf"))
