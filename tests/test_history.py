from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from appliance.core import Appliance
from appliance.history.conversations import Exchange, list_conversations, record_exchange
from appliance.history.db import HistoryDB
from appliance.history.migrations import Migration, applied, apply_migrations
from appliance.history.schema import CORE_MIGRATIONS
from appliance.plugins import load_plugins
from tests.fixtures import make_settings


def test_migrations_on_a_fresh_database(tmp_path: Path) -> None:
    db = HistoryDB(tmp_path / "h.db")
    done = db.write_sync(lambda d: apply_migrations(d, [("core", m) for m in CORE_MIGRATIONS]))
    assert [name for _, name in done] == [m.name for m in CORE_MIGRATIONS]
    tables = db.read_sync(lambda d: set(d.table_names()))
    assert {"conversations", "messages", "messages_fts", "tokens", "audit"} <= tables
    mode = db.read_sync(lambda d: d.execute("pragma journal_mode").fetchone()[0])
    assert mode == "wal"
    db.close()


def test_migrations_on_an_existing_database_apply_only_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    core = [("core", m) for m in CORE_MIGRATIONS]
    db = HistoryDB(path)
    db.write_sync(lambda d: apply_migrations(d, core))
    db.close()

    def add_notes(d: Any) -> None:
        d["notes"].create({"id": int, "text": str}, pk="id")

    db = HistoryDB(path)
    plugin = [("notes-plugin", Migration("create_notes", add_notes))]
    again = db.write_sync(lambda d: apply_migrations(d, core + plugin))
    assert again == [("notes-plugin", "create_notes")]
    assert db.write_sync(lambda d: apply_migrations(d, core + plugin)) == []
    assert ("notes-plugin", "create_notes") in db.read_sync(applied)
    db.close()


async def test_fifty_concurrent_writers_never_see_a_lock_error(tmp_path: Path) -> None:
    appliance = Appliance(make_settings(tmp_path / "home"), load_plugins(("echo",)))
    appliance.open()
    try:

        async def one(i: int) -> str:
            exchange = Exchange(
                owner=f"user{i % 5}",
                model="echo",
                api="openai",
                messages=[{"role": "user", "content": f"message number {i}"}],
                reply={"role": "assistant", "content": f"reply {i}"},
            )
            return await appliance.db.write(lambda db: record_exchange(db, exchange))

        ids = await asyncio.gather(*(one(i) for i in range(50)))
        assert len(set(ids)) == 50
        count = await appliance.db.read(lambda db: db["messages"].count)
        assert count == 100
    finally:
        appliance.close()


def test_follow_up_joins_the_conversation_and_search_finds_it(tmp_path: Path) -> None:
    db = HistoryDB(tmp_path / "h.db")
    db.write_sync(lambda d: apply_migrations(d, [("core", m) for m in CORE_MIGRATIONS]))
    first = [{"role": "user", "content": "What is the capital of France?"}]
    reply = {"role": "assistant", "content": "Paris."}
    conv = db.write_sync(
        lambda d: record_exchange(d, Exchange("u1", "echo", "openai", first, reply))
    )
    follow = [*first, reply, {"role": "user", "content": "And of Italy?"}]
    again = db.write_sync(
        lambda d: record_exchange(
            d, Exchange("u1", "echo", "openai", follow, {"role": "assistant", "content": "Rome."})
        )
    )
    assert again == conv
    other_owner = db.write_sync(
        lambda d: record_exchange(d, Exchange("u2", "echo", "openai", follow, reply))
    )
    assert other_owner != conv
    rows = db.read_sync(lambda d: list(d["messages"].rows_where("conversation_id = ?", [conv])))
    assert [r["content"] for r in rows] == [
        "What is the capital of France?",
        "Paris.",
        "And of Italy?",
        "Rome.",
    ]
    found = db.read_sync(lambda d: list_conversations(d, "u1", query="Italy?"))
    assert [c["id"] for c in found] == [conv]
    none = db.read_sync(lambda d: list_conversations(d, "u1", query="Germany"))
    assert none == []
    db.close()


async def test_retention_removes_old_history_only(tmp_path: Path) -> None:
    import time

    appliance = Appliance(
        make_settings(tmp_path / "home", history_retention_days=30), load_plugins(("echo",))
    )
    appliance.open()
    try:

        def add(db: Any, owner: str, age_days: float) -> str:
            ex = Exchange(
                owner,
                "echo",
                "openai",
                [{"role": "user", "content": owner}],
                {"role": "assistant", "content": "ok"},
            )
            conv = record_exchange(db, ex)
            db.execute(
                "update conversations set updated_at = ? where id = ?",
                [time.time() - age_days * 86400, conv],
            )
            return conv

        old = appliance.db.write_sync(lambda db: add(db, "old", 45))
        new = appliance.db.write_sync(lambda db: add(db, "new", 2))
        assert await appliance.enforce_retention() == 1
        left = appliance.db.read_sync(lambda db: [r["id"] for r in db.table("conversations").rows])
        assert left == [new] and old not in left
        orphans = appliance.db.read_sync(
            lambda db: db.execute(
                "select count(*) from messages where conversation_id = ?", [old]
            ).fetchone()[0]
        )
        assert orphans == 0
    finally:
        appliance.close()


def test_default_chat_model_prefers_the_setting(tmp_path: Path) -> None:
    appliance = Appliance(make_settings(tmp_path / "h", chat_model="echo"), load_plugins(("echo",)))
    appliance.detect()
    appliance.register_models()
    assert appliance.default_chat_model() == "echo"
    other = Appliance(make_settings(tmp_path / "i", chat_model="missing"), load_plugins(("echo",)))
    other.register_models()
    assert other.default_chat_model() == "echo"
