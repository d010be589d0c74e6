"""A chat model on llama.cpp, batched: the GGUF's own chat template, grammars, tool calls.

The scheduler drives it step by step (:class:`appliance.BatchedChatModel`); ``prepare`` refuses
bad requests before any response starts, and the engine decodes every admitted sequence in one
``llama_decode`` per step.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from appliance import (
    BadRequest,
    BatchedChatModel,
    ChatRequest,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
    message_text,
)
from appliance_llama.engine import LlamaEngine
from appliance_llama.rpc import RpcPool, Split
from appliance_llama.sampling import check_grammar, grammar_for
from appliance_llama.sequence import Sequence, parse_tool_calls
from appliance_llama.tools import ToolFormat, generic_messages, plan, reply_schema, system_prompt

__all__ = ["LlamaChatModel", "parse_tool_calls"]


class LlamaChatModel(BatchedChatModel):
    calls_tools = True  # natively where the template has tools, by a grammar otherwise
    prepares_while_stepping = True  # templates, tokenizer and grammars only read the model

    def __init__(
        self,
        info: ModelInfo,
        path_for_load: Callable[[], Path],
        n_ctx: int,
        n_threads: int,
        slots: int = 4,
        rpc: RpcPool | None = None,
        needs_pool: bool = False,
    ) -> None:
        self.info = info
        self.rpc = rpc
        """llama.cpp RPC workers to split the layers over (``rpc_workers``)."""
        self.needs_pool = needs_pool
        """Whether the model fits only with the workers' memory (the hardware choice says)."""
        self._split: Split | None = None
        self._path_for_load = path_for_load
        self.n_ctx = n_ctx
        """The context each request gets unless it asks for another (Ollama's ``num_ctx``)."""
        self.n_threads = n_threads
        self._slots = max(1, slots)
        self.pool_tokens = n_ctx * self._slots
        self.trained_ctx = int(info.details.get("trained_context") or n_ctx)
        self.engine: LlamaEngine | None = None
        self._formatter: Jinja2ChatFormatter | None = None
        self.template = ""

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def loaded(self) -> bool:
        return self.engine is not None

    @property
    def devices(self) -> tuple[str, ...]:
        """Where the loaded model runs: ``cpu`` and ``rpc:HOST:PORT`` for each worker used."""
        return self.engine.devices if self.engine is not None else ()

    def load(self) -> None:
        path = self._path_for_load()
        layers = int(self.info.details.get("layers") or 0)
        split = self.rpc.split_for(self.name, layers, self.needs_pool) if self.rpc else None
        try:
            engine = LlamaEngine(
                path,
                pool_tokens=self.pool_tokens,
                slots=self._slots,
                n_threads=self.n_threads,
                split=split,
            )
        except BaseException:
            self._release_split(split)
            raise
        self._split = split
        template = llama_cpp.llama_model_chat_template(engine.model.model, None)
        self.template = template.decode() if template else ""
        if self.template:
            eos = engine.token_text(llama_cpp.llama_vocab_eos(engine.vocab))
            bos = engine.token_text(llama_cpp.llama_vocab_bos(engine.vocab))
            self._formatter = Jinja2ChatFormatter(self.template, eos_token=eos, bos_token=bos)
        self.engine = engine

    def unload(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = None
        self._formatter = None
        self._release_split(self._split)
        self._split = None

    def _release_split(self, split: Split | None) -> None:
        if split is not None and self.rpc is not None:
            self.rpc.release(split)

    @property
    def supports_tools(self) -> bool:
        return "tools" in self.template

    def count_tokens(self, text: str) -> int:
        if self.engine is None:
            return super().count_tokens(text)
        return len(self.engine.tokenize(text, add_bos=False, special=False))

    def _messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for message in messages:
            role = "system" if message.get("role") == "developer" else message.get("role")
            out.append({**message, "role": role, "content": message_text(message.get("content"))})
        return out

    def _limit(self, requested: int | None) -> int:
        if requested is None:
            return min(self.n_ctx, self.pool_tokens)
        if requested > self.trained_ctx:
            raise BadRequest(
                f"num_ctx {requested} is above this model's trained context of "
                f"{self.trained_ctx} tokens",
                param="num_ctx",
            )
        if requested > self.pool_tokens:
            raise BadRequest(
                f"num_ctx {requested} is above the {self.pool_tokens} tokens this box keeps for "
                f"'{self.name}'",
                param="num_ctx",
            )
        return requested

    def prepare(self, request: GenerationRequest) -> Sequence:
        engine = self.engine
        assert engine is not None, "the scheduler loads a model before preparing requests"
        stops: tuple[str, ...] = ()
        tool_format: ToolFormat | None = None
        grammar = grammar_for(request.response_format)
        if isinstance(request, ChatRequest):
            prompt, stops, tool_format, tool_grammar = self._chat_prompt(engine, request)
            grammar = tool_grammar or grammar
        else:
            if request.suffix:
                raise BadRequest(
                    f"model '{self.name}' does not support fill-in-the-middle (suffix)",
                    param="suffix",
                )
            prompt = engine.tokenize(request.prompt, add_bos=True, special=False)
            if not prompt:
                raise BadRequest("the prompt is empty; send some text", param="prompt")
        limit = self._limit(request.sampling.n_ctx)
        if len(prompt) >= limit:
            raise BadRequest(
                f"the prompt is {len(prompt)} tokens but this model's context is {limit} tokens; "
                "shorten the conversation or start a new one",
                param="messages",
                code="context_length_exceeded",
            )
        for token, _ in request.sampling.logit_bias:
            if token >= engine.n_vocab:
                raise BadRequest(
                    f"logit_bias names token {token}; this model has {engine.n_vocab} tokens",
                    param="logit_bias",
                )
        if grammar is not None:
            check_grammar(engine.vocab, grammar)
        return Sequence(prompt, request.sampling, limit, grammar, stops, tool_format)

    def _chat_prompt(
        self, engine: LlamaEngine, request: ChatRequest
    ) -> tuple[list[int], tuple[str, ...], ToolFormat | None, str | None]:
        if self._formatter is None:
            raise BadRequest(f"model '{self.name}' has no chat template; use /v1/completions")
        tool_plan = plan(
            request.tools,
            request.tool_choice,
            native=self.supports_tools,
            parallel=request.parallel_tool_calls,
            messages=request.messages,
        )
        messages = self._messages(request.messages)
        grammar = None
        if tool_plan.format == "generic":
            schema = reply_schema(tool_plan, _answer_schema(request.response_format))
            messages = generic_messages(messages, system_prompt(tool_plan))
            grammar = grammar_for({"type": "json_schema", "json_schema": {"schema": schema}})
        try:
            formatted = self._formatter(
                messages=messages,  # type: ignore[arg-type]
                tools=tool_plan.tools if tool_plan.format == "native" else None,  # type: ignore[arg-type]
            )
        except Exception as exc:
            raise BadRequest(f"the messages do not fit this model's chat template: {exc}") from None
        prompt = engine.tokenize(
            formatted.prompt, add_bos=not formatted.added_special, special=True
        )
        raw_stops = [formatted.stop] if isinstance(formatted.stop, str) else formatted.stop or []
        return prompt, tuple(s for s in raw_stops if s), tool_plan.format, grammar

    def admit(self, sequence: Sequence) -> bool:
        assert self.engine is not None
        return self.engine.admit(sequence)

    def step(self, sequences: Seq[Sequence]) -> list[tuple[Any, GenerationChunk | Exception]]:
        assert self.engine is not None
        return list(self.engine.step(sequences))

    def interrupt(self, sequence: Sequence) -> bool:
        engine = self.engine
        return engine is not None and engine.interrupt_for(sequence)

    def release(self, sequence: Sequence, cancelled: bool) -> None:
        if self.engine is not None:
            self.engine.release(sequence, cancelled)


def _answer_schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """A ``json_schema`` response format shapes the answer inside a generic tool reply."""
    if response_format and response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema")
        return schema if isinstance(schema, dict) else None
    return None
