"""Transcriptions kept in history, searchable."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import sqlite_utils

from appliance.history.migrations import migration


@migration("create_transcriptions")
def create_transcriptions(db: sqlite_utils.Database) -> None:
    db.table("transcriptions").create(
        {
            "id": str,
            "owner": str,
            "model": str,
            "task": str,
            "language": str,
            "filename": str,
            "duration_s": float,
            "processing_ms": float,
            "text": str,
            "segments": str,
            "created_at": float,
        },
        pk="id",
    )
    db.table("transcriptions").enable_fts(["text"], create_triggers=True)


def record_transcription(db: sqlite_utils.Database, row: dict[str, Any]) -> str:
    row = {
        **row,
        "id": uuid.uuid4().hex,
        "created_at": time.time(),
        "segments": json.dumps(row.get("segments", [])),
    }
    db.table("transcriptions").insert(row)
    return str(row["id"])
