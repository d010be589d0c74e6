"""The Responses API with the openai SDK against the box: text and multi-turn input,
instructions, streaming events, previous_response_id on server-side history, store; every
response and event validated against the OpenAI spec."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from appliance.keys import APPLIANCE
from tests.fixtures import ClientFactory
from tests.openapi import validate_openai

EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.completed": "ResponseCompletedEvent",
}


async def sdk(make_client: ClientFactory) -> tuple[Any, openai.AsyncOpenAI]:
    client = await make_client()
    base = str(client.make_url("/v1"))
    return client, openai.AsyncOpenAI(base_url=base, api_key="unused")


async def test_a_response_and_a_follow_up_on_server_side_history(
    make_client: ClientFactory,
) -> None:
    client, api = await sdk(make_client)
    first = await api.responses.create(
        model="echo", input="first question", instructions="Answer briefly."
    )
    validate_openai("Response", first.model_dump(mode="json", exclude_unset=True))
    assert first.status == "completed" and "first question" in first.output_text
    assert first.usage is not None and first.usage.total_tokens > 0
    second = await api.responses.create(
        model="echo", input="second question", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id and "second question" in second.output_text
    fetched = await api.responses.retrieve(second.id)
    assert fetched.output_text == second.output_text
    appliance = client.app[APPLIANCE]
    rows = appliance.db.read_sync(lambda db: list(db["conversations"].rows))
    assert len(rows) == 1, "the follow-up continues the same conversation"
    messages = appliance.db.read_sync(
        lambda db: [m["content"] for m in db["messages"].rows_where(order_by="seq")]
    )
    assert "first question" in messages[0] and "second question" in messages[2]
    await api.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        await api.responses.retrieve(second.id)


async def test_store_false_keeps_no_response(make_client: ClientFactory) -> None:
    _, api = await sdk(make_client)
    once = await api.responses.create(model="echo", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        await api.responses.create(model="echo", input="y", previous_response_id=once.id)


async def test_streamed_events_in_order_and_by_the_spec(make_client: ClientFactory) -> None:
    _, api = await sdk(make_client)
    stream = await api.responses.create(
        model="echo",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "hello there"}]},
        ],
        stream=True,
    )
    kinds, text = [], ""
    async for event in stream:
        data = event.model_dump(mode="json", exclude_unset=True)
        validate_openai(EVENT_SCHEMAS[event.type], data)
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            assert event.response.output_text == text
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and "hello there" in text
    numbers = kinds.index("response.output_text.delta")
    assert kinds[numbers - 2 : numbers] == [
        "response.output_item.added",
        "response.content_part.added",
    ]


async def test_refusals(make_client: ClientFactory) -> None:
    _, api = await sdk(make_client)
    with pytest.raises(openai.BadRequestError, match="function tools"):
        await api.responses.create(
            model="echo", input="x", tools=[{"type": "web_search_preview"}], stream=True
        )
    with pytest.raises(openai.NotFoundError):
        await api.responses.create(model="echo", input="x", previous_response_id="resp_nope")
