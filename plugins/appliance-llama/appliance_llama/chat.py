"""A chat model on llama.cpp: the GGUF's own chat template, grammars for JSON, tool calls."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar, json_schema_to_gbnf

from appliance import BadRequest, ChatModel, ChatRequest, CompletionRequest, GenerationChunk
from appliance.capabilities.chat import ModelInfo
from appliance.history.conversations import message_text
from appliance_llama.generate import generate

_TOOL_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


def _grammar(response_format: dict[str, Any] | None) -> Any:
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format["type"] == "json_object":
        schema = response_format.get("schema")
        if schema is None:
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    else:
        schema = response_format.get("json_schema", {}).get("schema")
        if not isinstance(schema, dict):
            raise BadRequest(
                "response_format.json_schema.schema must be a JSON schema object",
                param="response_format",
            )
    try:
        gbnf = json_schema_to_gbnf(json.dumps(schema))
        # The converter lets raw control characters into strings, which JSON forbids.
        gbnf = gbnf.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x7F\\x00-\\x1F]')
        return LlamaGrammar.from_string(gbnf, verbose=False)
    except Exception as exc:
        raise BadRequest(
            f"cannot build a grammar from that schema: {exc}", param="response_format"
        ) from None


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """Tool calls in the Hermes/Qwen ``<tool_call>{...}</tool_call>`` form or a bare JSON call."""
    raw = _TOOL_CALL_RE.findall(text)
    if not raw:
        stripped = text.strip()
        raw = [stripped] if stripped.startswith("{") and stripped.endswith("}") else []
    calls = []
    for item in raw:
        try:
            data = json.loads(item)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict) or "name" not in data:
            continue
        arguments = data.get("arguments", data.get("parameters", {}))
        calls.append(
            {
                "id": "call_" + uuid.uuid4().hex[:24],
                "type": "function",
                "function": {
                    "name": str(data["name"]),
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return calls


class LlamaChatModel(ChatModel):
    def __init__(self, info: ModelInfo, path_for_load: Any, n_ctx: int, n_threads: int) -> None:
        self.info = info
        self._path_for_load = path_for_load
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.llm: Any = None
        self._formatter: Jinja2ChatFormatter | None = None
        self.template = ""

    @property
    def loaded(self) -> bool:
        return self.llm is not None

    def load(self) -> None:
        path: Path = self._path_for_load()
        self.llm = llama_cpp.Llama(
            str(path), n_ctx=self.n_ctx, n_threads=self.n_threads, n_batch=512, verbose=False
        )
        self.template = self.llm.metadata.get("tokenizer.chat_template", "")
        if self.template:
            eos = self.llm._model.token_get_text(self.llm.token_eos())
            bos = self.llm._model.token_get_text(self.llm.token_bos())
            self._formatter = Jinja2ChatFormatter(self.template, eos_token=eos, bos_token=bos)

    def unload(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.llm = None
        self._formatter = None

    @property
    def supports_tools(self) -> bool:
        return "tools" in self.template

    def count_tokens(self, text: str) -> int:
        if self.llm is None:
            return super().count_tokens(text)
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=False))

    def _messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for message in messages:
            role = "system" if message.get("role") == "developer" else message.get("role")
            item = {**message, "role": role, "content": message_text(message.get("content"))}
            out.append(item)
        return out

    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        if self._formatter is None:
            raise BadRequest(f"model '{self.name}' has no chat template; use /v1/completions")
        tools = request.tools
        if tools and request.tool_choice != "none" and not self.supports_tools:
            raise BadRequest(
                f"model '{self.name}' was not trained for tool calls (its chat template has no "
                "tools); choose a model that supports them",
                param="tools",
            )
        if request.tool_choice == "none":
            tools = None
        try:
            formatted = self._formatter(messages=self._messages(request.messages), tools=tools)
        except Exception as exc:
            raise BadRequest(f"the messages do not fit this model's chat template: {exc}") from None
        prompt = self.llm.tokenize(
            formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
        )
        stops = tuple(
            s
            for s in ([formatted.stop] if isinstance(formatted.stop, str) else formatted.stop or [])
            if s
        )
        chunks = generate(
            self.llm, prompt, request.sampling, cancel, _grammar(request.response_format), stops
        )
        if not tools:
            return chunks
        return self._with_tool_calls(chunks)

    def _with_tool_calls(self, chunks: Iterator[GenerationChunk]) -> Iterator[GenerationChunk]:
        """Buffer the reply so tool calls can be returned as structured ``tool_calls``."""
        parts = []
        for chunk in chunks:
            parts.append(chunk.text)
            if chunk.finish_reason is None:
                continue
            text = "".join(parts)
            calls = parse_tool_calls(text)
            if calls:
                yield GenerationChunk(tool_calls=calls)
                yield GenerationChunk(finish_reason="tool_calls", usage=chunk.usage)
            else:
                yield GenerationChunk(
                    text=text, finish_reason=chunk.finish_reason, usage=chunk.usage
                )

    def complete(
        self, request: CompletionRequest, cancel: threading.Event
    ) -> Iterator[GenerationChunk]:
        if request.suffix:
            raise BadRequest(
                f"model '{self.name}' does not support fill-in-the-middle (suffix)", param="suffix"
            )
        prompt = self.llm.tokenize(request.prompt.encode(), add_bos=True, special=False)
        return generate(
            self.llm, prompt, request.sampling, cancel, _grammar(request.response_format)
        )
