"""A new conversation whose system prompt is in the cells of a request in flight shares those
cells instead of reading the prompt again, and answers as it does alone; the shared cells
outlive the request that wrote them. Clients see it in ``usage.prompt_tokens_details``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import llama_cpp
import pytest
from appliance_llama.engine import LlamaEngine
from appliance_llama.sequence import Sequence
from appliance_llama.slots import common_prefix
from openai import AsyncOpenAI

from appliance import GenerationChunk

from .conftest import CHAT, batched_client, engine_fixture, greedy_sequence

pytestmark = pytest.mark.model
TEMPLATE = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
FIRST, SECOND = "Tell me a story about a lighthouse.", "What is two plus two?"


engine = engine_fixture(4)


def ask(engine: LlamaEngine, question: str, tokens: int) -> Sequence:
    return greedy_sequence(engine, TEMPLATE.format(question), tokens)


def decode(engine: LlamaEngine, live: list[Sequence], texts: dict[int, str]) -> None:
    for s, chunk in engine.step([s for s in live if not s.finished]):
        assert isinstance(chunk, GenerationChunk), chunk
        texts[id(s)] = texts.get(id(s), "") + chunk.text


def alone(engine: LlamaEngine, question: str, tokens: int) -> str:
    sequence, texts = ask(engine, question, tokens), {}
    assert engine.admit(sequence)
    while not sequence.finished:
        decode(engine, [sequence], texts)
    engine.release(sequence, cancelled=False)
    return texts[id(sequence)]


@pytest.mark.parametrize("first_leaves", [False, True])
def test_a_second_conversation_shares_the_system_prompt_in_cells_and_answers_as_alone(
    engine: LlamaEngine, first_leaves: bool
) -> None:
    lone = [alone(engine, FIRST, 40), alone(engine, SECOND, 24)]
    for slot in engine.slots:
        engine.caches.forget(slot)  # the only cached prefix will be the first request's cells
    first, second = ask(engine, FIRST, 40), ask(engine, SECOND, 24)
    texts: dict[int, str] = {}
    assert engine.admit(first)
    for _ in range(3):
        decode(engine, [first], texts)
    assert engine.admit(second)
    system = common_prefix(first.prompt, second.prompt)
    assert system > 20 and second.n_past == system, "the system prompt is not read again"
    assert engine.caches.shared == 1 and second.slot is not first.slot
    # Its first cells are the first request's: llama.cpp counts both sequences in them.
    assert llama_cpp.llama_memory_seq_pos_min(engine.memory, second.slot.id) == 0
    live = [first, second]
    while not second.finished:
        decode(engine, live, texts)
        if first_leaves and not first.finished and len(texts.get(id(second), "")) > 0:
            engine.release(first, cancelled=True)  # its cells are retired; the shared stay
            first.finished = True
            live.remove(first)
    assert texts[id(second)] == lone[1]
    if not first_leaves:
        while not first.finished:
            decode(engine, live, texts)
        assert texts[id(first)] == lone[0]
    assert len(lone[0]) > 40 and len(lone[1]) > 5


def test_conversations_admitted_together_read_their_system_prompt_once(
    engine: LlamaEngine,
) -> None:
    questions = [FIRST, SECOND, "Name three colours."]
    lone = [alone(engine, q, 24) for q in questions]
    for slot in engine.slots:
        engine.caches.forget(slot)
    together = [ask(engine, q, 24) for q in questions]
    for s in together:
        assert engine.admit(s)
    assert all(s.n_past == 0 for s in together), "nothing is cached yet"
    texts: dict[int, str] = {}
    decode(engine, together, texts)
    first, *others = together
    assert first.n_past == len(first.prompt) and all(s.n_past == 0 for s in others), (
        "the others wait for the first's cells rather than read the system prompt beside it"
    )
    decode(engine, together, texts)
    system = common_prefix(first.prompt, others[0].prompt)
    assert engine.caches.shared == 2 and system > 20
    assert all(s.n_past == len(s.prompt) for s in others), "their own parts, read in one step"
    while not all(s.finished for s in together):
        decode(engine, together, texts)
    assert [texts[id(s)] for s in together] == lone


async def test_a_client_sees_its_system_prompt_shared_from_a_request_in_flight(
    aiohttp_client: Any, home: Path
) -> None:
    client = await batched_client(aiohttp_client, home)
    openai = AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="unused", max_retries=0)
    system = "You are the front desk of a small office. Answer briefly and politely, in English."

    def messages(question: str) -> Any:
        return [{"role": "system", "content": system}, {"role": "user", "content": question}]

    story = await openai.chat.completions.create(
        model=CHAT, messages=messages("Tell me a long story."), temperature=0, max_tokens=96,
        stream=True,
    )  # fmt: skip
    async for chunk in story:  # the first request of a fresh box: only its cells hold the prompt
        if chunk.choices and chunk.choices[0].delta.content:
            break
    question = messages("Where is the printer?")
    beside = await openai.chat.completions.create(
        model=CHAT, messages=question, temperature=0, max_tokens=24
    )
    async for _ in story:
        pass
    usage = beside.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens or 0
    assert 20 < cached < usage.prompt_tokens, "the system prompt came from the story's cells"
    alone = await openai.chat.completions.create(
        model=CHAT, messages=question, temperature=0, max_tokens=24
    )
    assert beside.choices[0].message.content == alone.choices[0].message.content
    assert alone.usage is not None and alone.usage.prompt_tokens_details is not None
    assert alone.usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens - 1
    answer = await openai.responses.create(
        model=CHAT, instructions=system, input="Where is the printer?", temperature=0,
        max_output_tokens=24,
    )  # fmt: skip
    assert answer.usage is not None
    assert 20 < answer.usage.input_tokens_details.cached_tokens < answer.usage.input_tokens
    await openai.close()
