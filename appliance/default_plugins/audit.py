"""Writes events to the audit table, batched through the single history writer."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from appliance import hookimpl
from appliance.history.audit import AuditRecord, insert_audit

if TYPE_CHECKING:
    from appliance.core import Appliance, Event


@hookimpl
def track_event(appliance: Appliance, event: Event) -> None:
    record = AuditRecord(
        action=event.name,
        actor=event.actor.id if event.actor else "anonymous",
        role=event.actor.role if event.actor else "",
        resource=event.resource,
        address=event.address,
        request_id=event.request_id,
        status=event.status,
        detail=event.detail,
        at=event.at,
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the CLI: no event loop, write now
        appliance.db.write_sync(lambda db: insert_audit(db, [record]))
        return
    appliance.spawn(appliance.db.write(lambda db: insert_audit(db, [record])))
