"""Clients nobody here wrote, against a live box, sending what they really send: LangChain's
ChatOllama and OllamaEmbeddings and LlamaIndex's Ollama (options full of nulls, a bare model
name), the openai and ollama packages with tools while streaming, images for a text-only model,
and stream_options without a stream."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import ollama
import openai
import pytest

from tests.live import LiveBox

pytestmark = [pytest.mark.model, pytest.mark.slow]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIMESTAMP = {
    "type": "function",
    "function": {
        "name": "get_current_timestamp",
        "description": "Get the current Unix timestamp",
        "parameters": {"type": "object", "properties": {}},
    },
}
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f80f0000010101005d2a2d6a0000000049454e44ae426082"
    )
).decode()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBox]:
    with LiveBox(tmp_path_factory.mktemp("clients") / "home", plugins="llama") as live:
        yield live


def test_langchain_chat_ollama_with_a_bare_name_and_null_options(box: LiveBox) -> None:
    from langchain_ollama import ChatOllama

    chat = ChatOllama(model="smollm2", base_url=box.url, temperature=0, num_predict=16)
    reply = chat.invoke("Say hello to the office.")
    assert isinstance(reply.content, str) and reply.content.strip()
    with_tools = chat.bind_tools([WEATHER]).invoke("What is the weather in Paris?")
    assert with_tools.content or with_tools.tool_calls
    for call in with_tools.tool_calls:
        assert call["name"] == "get_weather" and isinstance(call["args"], dict)


def test_langchain_ollama_embeddings(box: LiveBox) -> None:
    from langchain_ollama import OllamaEmbeddings

    embeddings = OllamaEmbeddings(model="all-minilm", base_url=box.url)
    vector = embeddings.embed_query("Where is the printer?")
    assert len(vector) == 384 and abs(sum(v * v for v in vector) - 1) < 1e-3
    assert len(embeddings.embed_documents(["one", "two"])) == 2


def test_llamaindex_ollama_complete_and_chat(box: LiveBox) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.ollama import Ollama

    llm = Ollama(model="smollm2:latest", base_url=box.url, request_timeout=120, temperature=0)
    assert llm.complete("The capital of France is").text.strip()
    answer = llm.chat([ChatMessage(role="user", content="Say hi.")])
    assert answer.message.content


def test_openai_tools_while_streaming_come_as_tool_call_deltas(box: LiveBox) -> None:
    client = openai.OpenAI(base_url=box.url + "/v1", api_key="unused")
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER, TIMESTAMP],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
        temperature=None,
        top_p=None,
        presence_penalty=None,
        max_tokens=64,
    )
    deltas, finish = [], None
    for chunk in stream:
        for choice in chunk.choices:
            deltas += choice.delta.tool_calls or []
            finish = choice.finish_reason or finish
    assert finish == "tool_calls" and deltas
    call = deltas[0]
    assert call.index == 0 and call.id and call.function and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments or "{}")
    assert isinstance(arguments.get("city"), str)
    followed = client.chat.completions.create(
        model="smollm2",
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps(arguments)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees"},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
        max_tokens=32,
    )
    assert followed.choices[0].message.content or followed.choices[0].message.tool_calls


def test_openai_refusals_come_before_any_stream(box: LiveBox) -> None:
    client = openai.OpenAI(base_url=box.url + "/v1", api_key="unused")
    with pytest.raises(openai.BadRequestError, match="reads text only"):
        client.chat.completions.create(
            model="smollm2",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PIXEL}"},
                        },
                    ],
                }
            ],
            stream=True,
        )
    with pytest.raises(openai.BadRequestError, match="stream_options"):
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "hi"}],
            stream_options={"include_usage": True},
        )
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "hi"}],
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice={"type": "function", "function": {"name": "nope"}},
            stream=True,
        )


def test_ollama_tools_images_and_show(box: LiveBox) -> None:
    client = ollama.Client(host=box.url)
    parts = list(
        client.chat(
            model="smollm2",
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER],
            stream=True,
            options={"temperature": 0, "num_predict": 64},
        )
    )
    assert parts[-1].done
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert calls or "".join(p.message.content or "" for p in parts).strip()
    for call in calls:
        assert call.function.name == "get_weather" and isinstance(call.function.arguments, dict)
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(
            model="smollm2",
            messages=[{"role": "user", "content": "Describe it.", "images": [PIXEL]}],
            stream=True,
        ).__next__()
    assert refused.value.status_code == 400 and "reads text only" in str(refused.value)
    shown = client.show("smollm2")
    assert "tools" in (shown.capabilities or [])
    tags = {m.model: m for m in client.list().models}
    assert "smollm2:135m" in tags


def test_every_api_names_what_each_model_is_for(box: LiveBox, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=box.url + "/v1", api_key="unused")
    kinds = {m.id: getattr(m, "capabilities", None) for m in client.models.list().data}
    assert "completion" in kinds["smollm2:135m"] and "tools" in kinds["smollm2:135m"]
    embedder = next(name for name in kinds if name.startswith("all-minilm"))
    assert kinds[embedder] == ["embedding"]


def test_the_responses_api_with_a_function_tool_and_its_output(box: LiveBox) -> None:
    client = openai.OpenAI(base_url=box.url + "/v1", api_key="unused")
    tool = {"type": "function", **WEATHER["function"], "strict": False}
    asked = client.responses.create(
        model="smollm2",
        input="What is the weather in Paris?",
        tools=[tool],  # type: ignore[list-item]
        tool_choice="required",
        max_output_tokens=64,
    )
    calls = [item for item in asked.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments).get("city"), str)
    answered = client.responses.create(
        model="smollm2",
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny"}],
        tools=[tool],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=32,
    )
    assert answered.status in ("completed", "incomplete") and answered.output_text.strip()
