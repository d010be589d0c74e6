"""One request being generated: its tokens, its sampler, and how its tokens become text.

Text is assembled exactly as a lone run would: incremental UTF-8 (a multi-byte character split
over tokens is held until complete), stop strings held back until they can no longer match,
logprobs computed from the row's logits only when asked, tool calls returned as structured
``tool_calls`` once the reply is complete.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from appliance import GenerationChunk, SamplingOptions, Usage
from appliance_llama.tools import ToolFormat, call, parse_generic

_TOOL_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


class StopMatcher:
    """Holds back text that could be the start of a stop string."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string was hit)."""
        self.pending += text
        for stop in self.stops:
            index = self.pending.find(stop)
            if index >= 0:
                out, self.pending = self.pending[:index], ""
                return out, True
        hold = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(stop[:size]):
                    hold = max(hold, size)
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """Tool calls as the template families write them: Hermes/Qwen ``<tool_call>{...}
    </tool_call>``, Llama 3.x's bare ``{"name": ..., "parameters": ...}`` (after
    ``<|python_tag|>``, several separated by ``;``), Mistral's ``[TOOL_CALLS] [{...}]``. A reply
    that is not wholly calls is an answer."""
    raw: list[Any] = []
    for item in _TOOL_CALL_RE.findall(text):
        with contextlib.suppress(json.JSONDecodeError):
            raw.append(json.loads(item))
    if not raw:
        body = text.strip().removeprefix("<|python_tag|>").removeprefix("[TOOL_CALLS]").strip()
        raw = _json_values(body) if body.startswith(("{", "[")) else []
    calls = []
    for data in (x for item in raw for x in (item if isinstance(item, list) else [item])):
        if isinstance(data, dict) and "name" in data:
            arguments = data.get("arguments", data.get("parameters", {}))
            calls.append(call(str(data["name"]), arguments))
    return calls


def _json_values(text: str) -> list[Any]:
    """Every JSON value in ``text`` separated by spaces, ``;`` or ``,``; [] if anything else."""
    decoder, position, values = json.JSONDecoder(), 0, []
    while position < len(text):
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return []
        values.append(value)
        while position < len(text) and text[position] in " \t\r\n;,":
            position += 1
    return values


@dataclass(eq=False)
class Sequence:
    """A request's state inside the engine. ``slot`` is set while it holds one."""

    prompt: list[int]
    sampling: SamplingOptions
    limit: int
    """The most tokens (prompt + reply) this sequence may hold in the KV cache."""
    grammar: str | None = None
    stops: tuple[str, ...] = ()
    tool_format: ToolFormat | None = None
    """How the reply carries tool calls: the template's own way, or generic JSON."""
    slot: Any = None
    sampler: Any = None
    n_past: int = 0
    """Tokens of this sequence already in the KV cache."""
    cached: int = 0
    """Prompt tokens that were in the KV cache before it read any."""
    next_token: int | None = None
    """The token sampled last, to be decoded in the next step."""
    produced: int = 0
    admitted_at: float = 0.0
    first_token_at: float | None = None
    finished: bool = False
    matcher: StopMatcher = field(init=False)
    decoder: codecs.IncrementalDecoder = field(init=False)
    buffered: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.matcher = StopMatcher(self.sampling.stop + self.stops)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def prefilling(self) -> bool:
        return self.next_token is None

    @property
    def max_tokens(self) -> int:
        room = self.limit - len(self.prompt)
        return min(self.sampling.max_tokens or room, room)

    def accept(
        self, token: int, piece: bytes, is_end: bool, logprobs: dict[str, Any] | None
    ) -> list[GenerationChunk]:
        """Take the token sampled for this sequence; return what may be shown now."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        if is_end:
            return self.finish("stop")
        self.produced += 1
        self.next_token = token
        text = self.decoder.decode(piece)
        if logprobs is not None:
            logprobs["token"] = text
            logprobs["bytes"] = list(text.encode())
        out, stopped = self.matcher.feed(text)
        chunks = []
        if self.tool_format:
            self.buffered.append(out)
            if logprobs:
                chunks.append(GenerationChunk(logprobs=[logprobs]))
        elif out or logprobs:
            chunks.append(GenerationChunk(text=out, logprobs=[logprobs] if logprobs else None))
        if stopped:
            return chunks + self.finish("stop", hit_stop=True)
        if self.produced >= self.max_tokens:
            return chunks + self.finish("length")
        return chunks

    def finish(self, reason: str, hit_stop: bool = False) -> list[GenerationChunk]:
        """The last chunk: what was held back (unless a stop string cut it), usage, reason."""
        self.finished = True
        tail = "" if hit_stop else self.matcher.flush() + self.decoder.decode(b"", final=True)
        now = time.monotonic()
        first = self.first_token_at or now
        usage = Usage(
            prompt_tokens=len(self.prompt),
            completion_tokens=self.produced,
            cached_tokens=self.cached,
            prompt_ms=(first - self.admitted_at) * 1000 if self.admitted_at else 0.0,
            decode_ms=(now - first) * 1000,
        )
        if not self.tool_format:
            return [GenerationChunk(text=tail, finish_reason=reason, usage=usage)]
        text = "".join(self.buffered) + tail
        if self.tool_format == "generic":
            text, calls = parse_generic(text)
        else:
            calls = parse_tool_calls(text)
        if calls:
            return [
                GenerationChunk(tool_calls=calls),
                GenerationChunk(finish_reason="tool_calls", usage=usage),
            ]
        return [GenerationChunk(text=text, finish_reason=reason, usage=usage)]
