"""Tool calls for every model.

A model whose chat template knows tools (Hermes/Qwen ``<tool_call>``, Llama 3.x, Mistral...) gets
them through its template and its reply is parsed. Any other model, and any request that
requires a call (``tool_choice`` ``required`` or a named function), gets the generic method
llama.cpp's server uses: the tools and the reply format described in a system message, and the
reply constrained by a grammar to ``{"tool_calls": [...]}`` (each call's arguments valid for
that tool's JSON schema) or ``{"response": "..."}``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from appliance import BadRequest

ToolFormat = Literal["native", "generic"]
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ToolPlan:
    """How one request uses tools: which are offered, whether a call is required, how."""

    tools: list[dict[str, Any]]
    required: bool
    format: ToolFormat | None
    most_calls: int = 1
    """The most calls one reply may hold (one when a function is named or parallel calls are
    off; otherwise one per tool, which keeps a small model from repeating itself)."""
    answer_only: bool = False
    """The generic method gives one round of calls per user message: once their results are
    in, the model answers (a model that was never trained for tools would otherwise call
    them again and again, as a front end such as Open WebUI keeps running them)."""

    @property
    def active(self) -> bool:
        return self.format is not None


def checked_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Tools in OpenAI's shape (Ollama sends the same), refused with a 400 naming the problem."""
    out = []
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise BadRequest(f"tools[{i}] must be {{'type': 'function', ...}}", param="tools")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"tools[{i}].function needs a 'name'", param="tools")
        if not _NAME.match(function["name"]):
            raise BadRequest(
                f"tools[{i}].function.name must be letters, digits, '_', '.' or '-' (1-64)",
                param="tools",
            )
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise BadRequest(f"tools[{i}].function.parameters must be a JSON schema", param="tools")
        out.append({"type": "function", "function": {**function, "parameters": parameters}})
    names = [t["function"]["name"] for t in out]
    if len(set(names)) != len(names):
        raise BadRequest("two tools have the same name", param="tools")
    return out


def plan(
    tools: list[dict[str, Any]] | None,
    tool_choice: Any,
    native: bool,
    parallel: bool = True,
    messages: list[dict[str, Any]] | None = None,
) -> ToolPlan:
    """OpenAI's ``tool_choice``: ``auto`` (default), ``none``, ``required``, or
    ``{"type": "function", "function": {"name": ...}}``."""
    offered = checked_tools(tools)
    if tool_choice in (None, "auto"):
        required = False
    elif tool_choice == "none":
        return ToolPlan([], False, None)
    elif tool_choice == "required":
        required = True
    elif isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name")
        offered = [t for t in offered if t["function"]["name"] == name]
        parallel = False
        if not offered:
            raise BadRequest(
                f"tool_choice names {name!r}, which is not in tools", param="tool_choice"
            )
        required = True
    else:
        raise BadRequest(
            "tool_choice must be 'auto', 'none', 'required' or "
            "{'type': 'function', 'function': {'name': ...}}",
            param="tool_choice",
        )
    if not offered:
        if required:
            raise BadRequest("tool_choice requires a call but no tools were sent", param="tools")
        return ToolPlan([], False, None)
    kind: ToolFormat = "native" if native and not required else "generic"
    answer_only = kind == "generic" and not required and _results_since_last_ask(messages or [])
    return ToolPlan(offered, required, kind, len(offered) if parallel else 1, answer_only)


def _results_since_last_ask(messages: list[dict[str, Any]]) -> bool:
    for message in reversed(messages):
        if message.get("role") == "tool":
            return True
        if message.get("role") == "user":
            return False
    return False


def reply_schema(tool_plan: ToolPlan, response: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON schema the grammar holds a generic reply to."""
    calls = []
    for tool in tool_plan.tools:
        function = tool["function"]
        calls.append(
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "const": function["name"]},
                    "arguments": function["parameters"],
                },
                "required": ["name", "arguments"],
            }
        )
    call = calls[0] if len(calls) == 1 else {"anyOf": calls}
    with_calls = {
        "type": "object",
        "properties": {
            "tool_calls": {
                "type": "array",
                "items": call,
                "minItems": 1,
                "maxItems": tool_plan.most_calls,
            }
        },
        "required": ["tool_calls"],
    }
    if tool_plan.required:
        return with_calls
    # A text answer says something: an empty one (which sampling can pick) tells the user nothing.
    answer = {
        "type": "object",
        "properties": {"response": response or {"type": "string", "minLength": 1}},
        "required": ["response"],
    }
    return answer if tool_plan.answer_only else {"anyOf": [answer, with_calls]}


def system_prompt(tool_plan: ToolPlan) -> str:
    """The tools and the reply format, in few tokens: one line a tool (its description's first
    sentence and its parameters, compact). The grammar holds the reply to the exact schema, so
    the schema itself is not repeated here; a front end that attaches twenty tools (Open WebUI)
    still leaves room for the conversation."""
    if tool_plan.answer_only:
        return (
            "The tools you called have answered; their results are above. Now write your reply "
            'to the user, as JSON: {"response": ...}'
        )
    lines = [f"- {_tool_line(t['function'])}" for t in tool_plan.tools]
    call = '{"tool_calls": [{"name": "<tool>", "arguments": {...}}]}'
    if tool_plan.required:
        reply = f"Reply only with JSON that calls tools: {call}"
    else:
        reply = (
            "Call a tool only when the user's request needs what it gives. Then reply with "
            f"JSON: {call}. Otherwise answer the user in JSON, your whole answer as the string "
            '"response".'
        )
    return "You can call these tools:\n" + "\n".join(lines) + "\n" + reply


def _tool_line(function: dict[str, Any]) -> str:
    description = " ".join(str(function.get("description") or "").split())
    first = re.split(r"(?<=[.!?])\s", description, maxsplit=1)[0][:160]
    properties = (function.get("parameters") or {}).get("properties") or {}
    arguments = ", ".join(
        f"{name}: {spec.get('type', 'any') if isinstance(spec, dict) else 'any'}"
        for name, spec in properties.items()
    )
    return f"{function['name']}({arguments})" + (f": {first}" if first else "")


def generic_messages(messages: list[dict[str, Any]], prompt: str) -> list[dict[str, Any]]:
    """The conversation as a template without tools can render it: the tool instructions in
    the system message, earlier calls as the JSON the model wrote, results as user turns."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            calls = [
                {
                    "name": c.get("function", {}).get("name", ""),
                    "arguments": _arguments(c.get("function", {}).get("arguments")),
                }
                for c in message["tool_calls"]
            ]
            out.append({"role": "assistant", "content": json.dumps({"tool_calls": calls})})
        elif role == "tool":
            name = message.get("name") or message.get("tool_call_id") or "the tool"
            out.append({"role": "user", "content": f"Result of {name}: {message.get('content')}"})
        else:
            out.append(message)
    if out and out[0].get("role") in ("system", "developer"):
        first = out[0]
        out[0] = {**first, "role": "system", "content": f"{first.get('content')}\n\n{prompt}"}
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value if value is not None else {}


def call(name: str, arguments: Any) -> dict[str, Any]:
    return {
        "id": "call_" + uuid.uuid4().hex[:24],
        "type": "function",
        "function": {
            "name": name,
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        },
    }


def parse_generic(text: str) -> tuple[str, list[dict[str, Any]]]:
    """A generic reply: (the answer's text, []) or ("", the calls). A reply cut short by the
    token limit keeps what its answer said so far."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        calls = _complete_calls(text)
        return ("", calls) if calls else (_partial_response(text), [])
    if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
        calls = [
            call(str(c["name"]), c.get("arguments", {}))
            for c in data["tool_calls"]
            if isinstance(c, dict) and "name" in c
        ]
        if calls:
            return "", calls
    if isinstance(data, dict) and "response" in data:
        response = data["response"]
        return (response if isinstance(response, str) else json.dumps(response)), []
    return text, []


def _complete_calls(text: str) -> list[dict[str, Any]]:
    """The calls a reply cut short by the token limit finished writing."""
    match = re.match(r'\s*\{\s*"tool_calls"\s*:\s*\[', text)
    if not match:
        return []
    decoder, position, calls = json.JSONDecoder(), match.end(), []
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        try:
            item, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return calls
        if isinstance(item, dict) and "name" in item:
            calls.append(call(str(item["name"]), item.get("arguments", {})))


def _partial_response(text: str) -> str:
    match = re.match(r'\s*\{\s*"response"\s*:\s*"', text)
    if not match:
        return text
    rest = text[match.end() :]
    while rest:  # the longest prefix that is a whole JSON string (an escape may be cut)
        try:
            return str(json.loads(f'"{rest}"'))
        except json.JSONDecodeError:
            rest = rest[:-1]
    return ""
