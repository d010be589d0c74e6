"""Conversations and messages. A request whose messages extend an earlier exchange joins it."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils


def message_text(content: Any) -> str:
    """Flatten OpenAI content (a string or a list of parts) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def fingerprint(messages: list[dict[str, Any]]) -> str:
    canonical = [[m.get("role", ""), message_text(m.get("content"))] for m in messages]
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False).encode()).hexdigest()


@dataclass
class Exchange:
    """One request and its reply, as it is stored."""

    owner: str
    model: str
    api: str
    messages: list[dict[str, Any]]
    reply: dict[str, Any]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_ms: float = 0.0
    decode_ms: float = 0.0
    total_ms: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    conversation_id: str | None = None
    stored_before: int | None = None
    """How many of ``messages`` the conversation held when the request was made (a stateful
    continuation): the rest is this turn's own, whatever other turns landed meanwhile."""


def _find_parent(db: sqlite_utils.Database, ex: Exchange) -> tuple[str, int] | None:
    """The longest prefix ending in an assistant turn that is some conversation's tip."""
    candidates: dict[str, int] = {}
    for end in range(len(ex.messages) - 1, 0, -1):
        if ex.messages[end - 1].get("role") == "assistant":
            candidates[fingerprint(ex.messages[:end])] = end
    if not candidates:
        return None
    marks = ",".join("?" for _ in candidates)
    rows = db.execute(
        f"select id, tip_hash from conversations where owner = ? and tip_hash in ({marks})",
        [ex.owner, *candidates],
    ).fetchall()
    if not rows:
        return None
    best = max(rows, key=lambda row: candidates[row[1]])
    return best[0], candidates[best[1]]


def record_exchange(db: sqlite_utils.Database, ex: Exchange) -> str:
    """Store the exchange; return its conversation id. Runs inside the writer's transaction."""
    now = time.time()
    new_messages = ex.messages
    if ex.conversation_id is not None:
        conv_id = ex.conversation_id
        stored = ex.stored_before
        if stored is None:
            stored = db.execute(
                "select count(*) from messages where conversation_id = ?", [conv_id]
            ).fetchone()[0]
        new_messages = ex.messages[stored:]
    else:
        parent = _find_parent(db, ex)
        if parent is not None:
            conv_id, prefix_len = parent
            new_messages = ex.messages[prefix_len:]
        else:
            conv_id = uuid.uuid4().hex
            first_user = next(
                (message_text(m.get("content")) for m in ex.messages if m.get("role") == "user"), ""
            )
            db.table("conversations").insert(
                {
                    "id": conv_id,
                    "title": first_user[:80],
                    "model": ex.model,
                    "owner": ex.owner,
                    "api": ex.api,
                    "tip_hash": "",
                    "message_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    seq = db.execute(
        "select coalesce(max(seq), -1) + 1 from messages where conversation_id = ?", [conv_id]
    ).fetchone()[0]
    rows = [
        {
            "conversation_id": conv_id,
            "seq": seq + i,
            "role": m.get("role", "user"),
            "content": message_text(m.get("content")),
            "model": "",
            "created_at": now,
            "meta": json.dumps({k: v for k, v in m.items() if k not in ("role", "content")})
            if len(m) > 2
            else "",
        }
        for i, m in enumerate(new_messages)
    ]
    rows.append(
        {
            "conversation_id": conv_id,
            "seq": seq + len(new_messages),
            "role": "assistant",
            "content": message_text(ex.reply.get("content")),
            "model": ex.model,
            "prompt_tokens": ex.prompt_tokens,
            "completion_tokens": ex.completion_tokens,
            "prompt_ms": ex.prompt_ms,
            "decode_ms": ex.decode_ms,
            "total_ms": ex.total_ms,
            "created_at": now,
            "meta": json.dumps(ex.meta) if ex.meta else "",
        }
    )
    db.table("messages").insert_all(rows, alter=False)
    full = [*ex.messages, {"role": "assistant", "content": ex.reply.get("content")}]
    db.execute(
        "update conversations set tip_hash = ?, updated_at = ?, model = ?, "
        "message_count = message_count + ? where id = ?",
        [fingerprint(full), now, ex.model, len(rows), conv_id],
    )
    return conv_id


def list_conversations(
    db: sqlite_utils.Database,
    owner: str | None,
    limit: int = 50,
    offset: int = 0,
    query: str | None = None,
) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    if owner is not None:
        where.append("c.owner = ?")
        params.append(owner)
    if query:
        where.append(
            "c.id in (select m.conversation_id from messages m join messages_fts f "
            "on f.rowid = m.id where messages_fts match ?)"
        )
        params.append(fts_quote(query))
    sql = "select c.* from conversations c"
    if where:
        sql += " where " + " and ".join(where)
    sql += " order by c.updated_at desc limit ? offset ?"
    cursor = db.execute(sql, [*params, limit, offset])
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def get_conversation(db: sqlite_utils.Database, conv_id: str) -> dict[str, Any] | None:
    rows = list(db.table("conversations").rows_where("id = ?", [conv_id]))
    if not rows:
        return None
    conv = rows[0]
    conv["messages"] = list(
        db.table("messages").rows_where("conversation_id = ?", [conv_id], order_by="seq")
    )
    return conv


def delete_conversation(db: sqlite_utils.Database, conv_id: str) -> None:
    db.execute("delete from messages where conversation_id = ?", [conv_id])
    db.execute("delete from conversations where id = ?", [conv_id])


def fts_quote(text: str) -> str:
    """Make user text safe for FTS5 MATCH: each word becomes a quoted term."""
    words = [w.replace('"', '""') for w in text.replace("\x00", " ").split() if w.strip()]
    return " ".join(f'"{w}"' for w in words) or '""'


def purge_older_than(db: sqlite_utils.Database, cutoff: float) -> int:
    """Delete conversations (and their messages) last updated before ``cutoff``."""
    old = [
        row[0]
        for row in db.execute(
            "select id from conversations where updated_at < ?", [cutoff]
        ).fetchall()
    ]
    for conv_id in old:
        delete_conversation(db, conv_id)
    db.execute("delete from transcriptions where created_at < ?", [cutoff])
    return len(old)
