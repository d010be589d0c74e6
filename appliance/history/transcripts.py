"""Transcriptions kept in history, searchable."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import sqlite_utils

from appliance.capabilities.transcribe import Transcription, TranscriptionRequest
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


@dataclass(frozen=True)
class TranscriptionRecord:
    """What history keeps of one transcription or translation, however it ran (now or as a job)."""

    owner: str
    model: str
    request: TranscriptionRequest
    result: Transcription
    filename: str
    duration_s: float
    processing_ms: float

    def write(self, db: sqlite_utils.Database) -> str:
        row = {
            "id": uuid.uuid4().hex,
            "owner": self.owner,
            "model": self.model,
            "task": "translate" if self.request.translate else "transcribe",
            "language": self.result.language,
            "filename": self.filename,
            "duration_s": self.duration_s,
            "processing_ms": self.processing_ms,
            "text": self.result.text,
            "segments": json.dumps(segments_of(self.result)),
            "created_at": time.time(),
        }
        db.table("transcriptions").insert(row)
        return str(row["id"])


def segments_of(result: Transcription) -> list[dict[str, Any]]:
    return [asdict(s) for s in result.segments]
