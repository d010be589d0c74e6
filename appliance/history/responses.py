"""Stored Responses-API responses: the conversation so far, for ``previous_response_id``."""

from __future__ import annotations

import sqlite_utils

from appliance.history.migrations import migration


@migration("create_responses")
def create_responses(db: sqlite_utils.Database) -> None:
    db.table("responses").create(
        {
            "id": str,
            "owner": str,
            "model": str,
            "conversation_id": str,
            "messages": str,
            "response": str,
            "created_at": float,
        },
        pk="id",
    )
