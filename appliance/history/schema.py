"""The core's own migrations."""

from __future__ import annotations

import sqlite_utils

from appliance.history.migrations import Migration, migration
from appliance.history.responses import create_responses
from appliance.history.transcripts import create_transcriptions
from appliance.jobs import create_jobs
from appliance.quotas import create_token_limits


@migration("create_conversations")
def _conversations(db: sqlite_utils.Database) -> None:
    db.table("conversations").create(
        {
            "id": str,
            "title": str,
            "model": str,
            "owner": str,
            "api": str,
            "tip_hash": str,
            "message_count": int,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
    )
    db.table("conversations").create_index(["tip_hash"])
    db.table("conversations").create_index(["owner", "updated_at"])
    db.table("messages").create(
        {
            "id": int,
            "conversation_id": str,
            "seq": int,
            "role": str,
            "content": str,
            "model": str,
            "prompt_tokens": int,
            "completion_tokens": int,
            "prompt_ms": float,
            "decode_ms": float,
            "total_ms": float,
            "created_at": float,
            "meta": str,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
    )
    db.table("messages").create_index(["conversation_id", "seq"], unique=True)
    db.table("messages").enable_fts(["content"], create_triggers=True, tokenize="porter")


@migration("create_tokens")
def _tokens(db: sqlite_utils.Database) -> None:
    db.table("tokens").create(
        {
            "id": str,
            "name": str,
            "role": str,
            "hash": str,
            "prefix": str,
            "created_at": float,
            "created_by": str,
            "last_used_at": float,
            "revoked_at": float,
        },
        pk="id",
        not_null={"hash", "role"},
    )
    db.table("tokens").create_index(["hash"], unique=True)


@migration("create_audit")
def _audit(db: sqlite_utils.Database) -> None:
    db.table("audit").create(
        {
            "id": int,
            "at": float,
            "actor": str,
            "role": str,
            "action": str,
            "resource": str,
            "address": str,
            "request_id": str,
            "status": int,
            "detail": str,
        },
        pk="id",
    )
    db.table("audit").create_index(["at"])


CORE_MIGRATIONS: list[Migration] = [
    _conversations,
    _tokens,
    _audit,
    create_transcriptions,
    create_jobs,
    create_token_limits,
    create_responses,
]
