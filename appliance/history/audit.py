"""Audit records: who did what, when, from where."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils


@dataclass(frozen=True)
class AuditRecord:
    action: str
    actor: str = "anonymous"
    role: str = ""
    resource: str = ""
    address: str = ""
    request_id: str = ""
    status: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


def insert_audit(db: sqlite_utils.Database, records: list[AuditRecord]) -> None:
    db.table("audit").insert_all(
        {
            "at": r.at,
            "actor": r.actor,
            "role": r.role,
            "action": r.action,
            "resource": r.resource,
            "address": r.address,
            "request_id": r.request_id,
            "status": r.status,
            "detail": json.dumps(r.detail) if r.detail else "",
        }
        for r in records
    )


def recent_audit(db: sqlite_utils.Database, limit: int = 100) -> list[dict[str, Any]]:
    return list(db.table("audit").rows_where(order_by="id desc", limit=limit))
