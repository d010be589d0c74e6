"""tool_choice as OpenAI documents it, the generic reply format and its parsing (no model)."""

from __future__ import annotations

import json

import pytest
from appliance_llama.tools import generic_messages, parse_generic, plan, reply_schema

from appliance import BadRequest

A = {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}}
B = {"type": "function", "function": {"name": "b"}}


def test_tool_choice_semantics() -> None:
    assert plan([A, B], None, native=True).format == "native"
    assert plan([A, B], "auto", native=False).format == "generic"
    assert not plan([A, B], "none", native=True).active
    required = plan([A, B], "required", native=True)
    assert required.format == "generic" and required.required and required.most_calls == 2
    named = plan([A, B], {"type": "function", "function": {"name": "b"}}, native=True)
    assert [t["function"]["name"] for t in named.tools] == ["b"] and named.most_calls == 1
    assert plan([A, B], "auto", native=False, parallel=False).most_calls == 1
    for bad_tools, choice in (
        ([A], {"type": "function", "function": {"name": "zzz"}}),
        ([A], "sometimes"),
        ([], "required"),
        ([{"type": "retrieval"}], None),
        ([{"type": "function", "function": {"name": "has space"}}], None),
        ([A, A], None),
    ):
        with pytest.raises(BadRequest):
            plan(bad_tools, choice, native=False)


def test_the_schema_allows_a_call_or_an_answer_unless_a_call_is_required() -> None:
    auto = reply_schema(plan([A, B], "auto", native=False))
    assert len(auto["anyOf"]) == 2
    asked = [{"role": "user", "content": "?"}]
    answered = [*asked, {"role": "assistant", "tool_calls": []}, {"role": "tool", "content": "1"}]
    assert not plan([A], "auto", native=False, messages=asked).answer_only
    after_results = plan([A], "auto", native=False, messages=answered)
    answer = reply_schema(after_results)
    assert after_results.answer_only and answer["required"] == ["response"]
    assert answer["properties"]["response"]["minLength"] == 1  # an answer is never empty
    assert not plan([A], "required", native=False, messages=answered).answer_only
    assert not plan([A], "auto", native=True, messages=answered).answer_only
    required = reply_schema(plan([A], "required", native=False))
    call = required["properties"]["tool_calls"]["items"]
    assert call["properties"]["name"]["const"] == "a" and required["required"] == ["tool_calls"]


def test_parsing_generic_replies() -> None:
    text, calls = parse_generic('{"tool_calls": [{"name": "a", "arguments": {"x": 1}}]}')
    assert text == "" and calls[0]["function"] == {"name": "a", "arguments": '{"x": 1}'}
    assert parse_generic('{"response": "Hello \\u00e9"}') == ("Hello é", [])
    # Cut short by the token limit: what the answer said so far, or the calls it finished.
    assert parse_generic('{"response": "Half a sent') == ("Half a sent", [])
    assert parse_generic('{"response": "ends in \\') == ("ends in ", [])
    text, calls = parse_generic(
        '{"tool_calls": [{"name": "a", "arguments": {}}, {"name": "b", "argu'
    )
    assert text == "" and [c["function"]["name"] for c in calls] == ["a"]


def test_history_with_calls_and_results_renders_without_a_tool_template() -> None:
    messages = generic_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [{"function": {"name": "a", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "TOOLS",
    )
    assert messages[0] == {"role": "system", "content": "Be brief.\n\nTOOLS"}
    assert json.loads(messages[2]["content"]) == {"tool_calls": [{"name": "a", "arguments": {}}]}
    assert messages[3] == {"role": "user", "content": "Result of call_1: sunny"}


@pytest.mark.parametrize(
    ("reply", "names"),
    [
        ('<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>', ["a"]),  # Hermes/Qwen
        (
            '<|python_tag|>{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}',
            ["a", "b"],
        ),  # Llama 3.x
        ('[TOOL_CALLS] [{"name": "b", "arguments": {}}]', ["b"]),  # Mistral
        ('{"name": "a", "arguments": {}}', ["a"]),
        ("The weather is fine.", []),
        ('{"name": "a"} and then some words', []),
    ],
)
def test_native_replies_of_each_family(reply: str, names: list[str]) -> None:
    from appliance_llama.sequence import parse_tool_calls

    assert [c["function"]["name"] for c in parse_tool_calls(reply)] == names
