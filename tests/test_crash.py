"""Power loss, as near as a test gets: kill -9 the server while streams and conversation writes
run, restart on the same home. The database is intact and every turn whose answer the client
received whole is in history."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.live import LiveBox

pytestmark = pytest.mark.slow


async def chat_stream(session: aiohttp.ClientSession, url: str, text: str) -> bool:
    """An Ollama stream; True when the final line (done: true) arrived."""
    body = {"model": "echo", "messages": [{"role": "user", "content": text}], "stream": True}
    try:
        async with session.post(url + "/api/chat", json=body) as response:
            async for line in response.content:
                if line.strip() and json.loads(line).get("done"):
                    return True
    except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError):
        return False
    return False


async def openai_stream(session: aiohttp.ClientSession, url: str, text: str) -> bool:
    body = {"model": "echo", "messages": [{"role": "user", "content": text}], "stream": True}
    try:
        async with session.post(url + "/v1/chat/completions", json=body) as response:
            async for line in response.content:
                if line.strip() == b"data: [DONE]":
                    return True
    except (TimeoutError, aiohttp.ClientError):
        return False
    return False


async def continue_conversation(
    session: aiohttp.ClientSession, url: str, conversation: str, text: str
) -> bool:
    try:
        async with session.post(
            f"{url}/appliance/conversations/{conversation}/messages", json={"content": text}
        ) as response:
            return response.status == 200 and bool((await response.json())["choices"])
    except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError):
        return False


async def crowd(url: str, conversation: str, seconds: float) -> set[str]:
    """Clients talking until the box dies; returns the texts whose answers arrived whole."""
    completed: set[str] = set()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def client(kind: int) -> None:
            n = 0
            while True:
                n += 1
                text = f"client {kind} turn {n}"
                call = (chat_stream, openai_stream)[kind % 2] if kind < 4 else None
                ok = (
                    await call(session, url, text)
                    if call
                    else await continue_conversation(session, url, conversation, text)
                )
                if ok:
                    completed.add(text)
                else:
                    return

        tasks = [asyncio.create_task(client(k)) for k in range(6)]
        await asyncio.wait(tasks, timeout=seconds + 40)
        for task in tasks:
            task.cancel()
    return completed


def history_texts(db_path: Path) -> set[str]:
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("select content from messages where role = 'user'").fetchall()
    return {r[0] for r in rows}


async def test_kill_9_during_streams_and_writes_loses_nothing_received(tmp_path: Path) -> None:
    home = tmp_path / "home"
    box = LiveBox(home, env={"APPLIANCE_QUEUE_SIZE": "64"}).start()
    async with aiohttp.ClientSession() as session:
        first = await session.post(
            box.url + "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "start"}]},
        )
        conversation = first.headers["X-Conversation-Id"]
    talking = asyncio.create_task(crowd(box.url, conversation, seconds=3))
    await asyncio.sleep(3)
    assert box.kill(signal.SIGKILL) == -signal.SIGKILL
    completed = await talking
    assert len(completed) > 20, "the crowd hardly talked before the kill"
    restarted = LiveBox(home, port=box.port).start()
    try:
        stored = history_texts(home / "appliance.db")
        missing = completed - stored
        assert not missing, f"{len(missing)} answered turns lost, e.g. {sorted(missing)[:5]}"
        async with aiohttp.ClientSession() as session:
            again = await session.post(
                f"{restarted.url}/appliance/conversations/{conversation}/messages",
                json={"content": "after the restart"},
            )
            assert again.status == 200
    finally:
        restarted.kill(signal.SIGTERM)
