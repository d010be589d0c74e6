"""Default identity and permissions: bearer tokens, and a role-based policy."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from appliance import hookimpl
from appliance.auth import Actor, actor_of_row, find_token

if TYPE_CHECKING:
    from aiohttp import web

    from appliance.core import Appliance

USER_ACTIONS = frozenset(
    {
        "models.use",
        "models.list",
        "conversations.own",
        "rag.query",
        "jobs.own",
    }
)
TOUCH_INTERVAL_S = 60.0


@hookimpl(trylast=True)
def actor_from_request(appliance: Appliance, request: web.Request) -> Any:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return _actor_for_token(appliance, token.strip())


async def _actor_for_token(appliance: Appliance, token: str) -> Actor | None:
    row = await appliance.db.read(lambda db: find_token(db, token))
    if row is None:
        return None
    now = time.time()
    if not row.get("last_used_at") or now - row["last_used_at"] > TOUCH_INTERVAL_S:
        appliance.spawn(
            appliance.db.write(
                lambda db: db.table("tokens").update(row["id"], {"last_used_at": now})
            )
        )
    return actor_of_row(row)


@hookimpl(trylast=True)
def permission_allowed(
    appliance: Appliance, actor: Actor | None, action: str, resource: str | None
) -> bool | None:
    if actor is None:
        return False
    if actor.role == "plugin":
        record = appliance.plugins.records.get(actor.name)
        return record is not None and action in record.permissions
    if actor.is_admin:
        return True
    if actor.role == "metrics":
        return action == "metrics.read" or None
    if actor.role == "user" and action in USER_ACTIONS:
        return True
    return None
