"""Drive Open WebUI's chat the way its web page does, against a box: sign in, connect the
socket the page keeps open, start a chat and send a message with the model's built-in tools
attached (the page's default), and wait for the answer streamed back as chat events. Then the
same over its OpenAI connection (a prefix tells the two apart). Runs with Open WebUI's own
Python (tests/clients/run): python openwebui_chat.py OPENWEBUI_URL BOX_URL MODEL."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import aiohttp
import socketio

DEBUG = bool(__import__("os").environ.get("OPENWEBUI_DEBUG"))


async def sign_in(session: aiohttp.ClientSession, url: str) -> str:
    async with session.post(
        f"{url}/api/v1/auths/signin", json={"email": "admin@localhost", "password": "admin"}
    ) as response:
        response.raise_for_status()
        return str((await response.json())["token"])


async def use_openai_connection_with_prefix(
    session: aiohttp.ClientSession, url: str, token: str, box: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    config = {
        "ENABLE_OPENAI_API": True,
        "OPENAI_API_BASE_URLS": [f"{box}/v1"],
        "OPENAI_API_KEYS": ["unused"],
        "OPENAI_API_CONFIGS": {"0": {"enable": True, "prefix_id": "oa"}},
    }
    async with session.post(f"{url}/openai/config/update", json=config, headers=headers) as r:
        r.raise_for_status()


async def models(session: aiohttp.ClientSession, url: str, token: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/api/models", headers={"Authorization": f"Bearer {token}"}) as r:
        r.raise_for_status()
        return list((await r.json())["data"])


async def chat_like_the_page(
    session: aiohttp.ClientSession, url: str, token: str, model: str, text: str
) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    sio = socketio.AsyncClient()
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    errors: list[Any] = []

    @sio.on("events")
    async def on_event(event: dict[str, Any]) -> None:
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        if DEBUG:
            print("event", str(event)[:300], file=sys.stderr)
        inner = data.get("data") if isinstance(data.get("data"), dict) else {}
        failed = data.get("type") == "chat:message:error" or inner.get("error")
        if failed:
            errors.append(data)
        finished = data.get("type") == "chat:completion" and inner.get("done")
        if (failed or finished) and not done.done():
            done.set_result("")

    await sio.connect(
        url, socketio_path="/ws/socket.io", auth={"token": token}, transports=["websocket"]
    )
    try:
        user_id, answer_id = str(uuid.uuid4()), str(uuid.uuid4())
        user_message = {
            "id": user_id,
            "parentId": None,
            "childrenIds": [answer_id],
            "role": "user",
            "content": text,
            "models": [model],
        }
        new_chat = {
            "chat": {
                "title": "New Chat",
                "models": [model],
                "params": {},
                "history": {"messages": {user_id: user_message}, "currentId": user_id},
                "messages": [user_message],
                "tags": [],
                "timestamp": 0,
            }
        }
        async with session.post(f"{url}/api/v1/chats/new", json=new_chat, headers=headers) as r:
            r.raise_for_status()
            chat_id = (await r.json())["id"]
        body = {
            "stream": True,
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "params": {},
            "tool_servers": [],
            "features": {
                "voice": False,
                "image_generation": False,
                "code_interpreter": False,
                "web_search": False,
                "memory": False,
            },
            "variables": {},
            "model_item": {},
            "session_id": sio.sid,
            "chat_id": chat_id,
            "id": answer_id,
            "parent_id": user_id,
            "user_message": user_message,
            "background_tasks": {
                "title_generation": False,
                "tags_generation": False,
                "follow_up_generation": False,
            },
        }
        async with session.post(f"{url}/api/chat/completions", json=body, headers=headers) as r:
            started = await r.text()
            if r.status != 200:
                raise SystemExit(f"{model}: /api/chat/completions answered {r.status}: {started}")
        await asyncio.wait_for(done, 240)
        async with session.get(f"{url}/api/v1/chats/{chat_id}", headers=headers) as r:
            r.raise_for_status()
            stored = (await r.json())["chat"]["history"]["messages"].get(answer_id, {})
        answer = str(stored.get("content") or "")  # what the answer bubble shows
    finally:
        await sio.disconnect()
    if errors:
        raise SystemExit(f"{model}: the chat failed: {errors}")
    return answer


async def main(url: str, box: str, model: str) -> None:
    async with aiohttp.ClientSession() as session:
        token = await sign_in(session, url)
        await use_openai_connection_with_prefix(session, url, token, box)
        listed = {m["id"]: m for m in await models(session, url, token)}
        for wanted in (model, f"oa.{model}"):
            if wanted not in listed:
                raise SystemExit(f"Open WebUI does not list {wanted}; it lists {sorted(listed)}")
            answer = await chat_like_the_page(
                session, url, token, wanted, "Say hello to the office."
            )
            if not answer.strip():
                raise SystemExit(f"{wanted}: the answer bubble stayed empty")
            print(f"ok - Open WebUI's chat answers with {wanted}: {answer[:60]!r}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
