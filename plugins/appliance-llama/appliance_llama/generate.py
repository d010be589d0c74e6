"""The token loop: sampling through llama.cpp, incremental UTF-8, stop strings, logprobs.

Driving ``Llama.generate`` directly (instead of ``create_chat_completion``) gives exact token
counts and timings, a cancel check on every token, logprobs without ``logits_all`` (which would
cost n_ctx x vocab floats), and the KV-cache prefix reuse that ``generate`` does on its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import llama_cpp
import numpy as np

from appliance import GenerationChunk, Usage
from appliance.capabilities.chat import SamplingOptions
from appliance.errors import BadRequest


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


def _utf8_split(data: bytes) -> tuple[str, bytes]:
    """Decode the longest complete UTF-8 prefix; return it and the incomplete rest."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            return data[:cut].decode("utf-8"), data[cut:]
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace"), b""


def _logprob_entry(llm: Any, token: int, text: str, top: int) -> dict[str, Any]:
    n_vocab = llm.n_vocab()
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
    shifted = logits.astype(np.float64) - float(np.max(logits))
    log_probs = shifted - math.log(float(np.exp(shifted).sum()))
    entry: dict[str, Any] = {
        "token": text,
        "logprob": float(log_probs[token]),
        "bytes": list(text.encode()),
        "top_logprobs": [],
    }
    if top:
        for candidate in np.argsort(-log_probs)[:top]:
            piece = llm.detokenize([int(candidate)]).decode("utf-8", errors="replace")
            entry["top_logprobs"].append(
                {
                    "token": piece,
                    "logprob": float(log_probs[candidate]),
                    "bytes": list(piece.encode()),
                }
            )
    return entry


def generate(
    llm: Any,
    prompt: list[int],
    sampling: SamplingOptions,
    cancel: threading.Event,
    grammar: Any = None,
    extra_stops: tuple[str, ...] = (),
) -> Iterator[GenerationChunk]:
    n_ctx = llm.n_ctx()
    if len(prompt) >= n_ctx:
        raise BadRequest(
            f"the prompt is {len(prompt)} tokens but this model's context is {n_ctx} tokens; "
            "shorten the conversation or start a new one",
            param="messages",
            code="context_length_exceeded",
        )
    room = n_ctx - len(prompt)
    max_tokens = min(sampling.max_tokens or room, room)
    if sampling.seed is not None:
        llm.set_seed(sampling.seed)
    started = time.monotonic()
    first_token_at: float | None = None
    matcher = StopMatcher(sampling.stop + extra_stops)
    vocab = llm._model.vocab
    pending = b""
    produced = 0
    finish = "length"
    hit_stop_string = False
    tokens = llm.generate(
        prompt,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        min_p=sampling.min_p,
        temp=sampling.temperature,
        repeat_penalty=sampling.repeat_penalty,
        frequency_penalty=sampling.frequency_penalty,
        presence_penalty=sampling.presence_penalty,
        grammar=grammar,
        reset=True,
    )
    try:
        for token in tokens:
            if first_token_at is None:
                first_token_at = time.monotonic()
            if cancel.is_set():
                finish = "cancelled"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            produced += 1
            pending += llm.detokenize([token], prev_tokens=None)
            text, pending = _utf8_split(pending)
            logprobs = (
                [_logprob_entry(llm, token, text, sampling.top_logprobs)]
                if sampling.logprobs
                else None
            )
            out, stopped = matcher.feed(text)
            if out or logprobs:
                yield GenerationChunk(text=out, logprobs=logprobs)
            if stopped:
                finish = "stop"
                hit_stop_string = True
                break
            if produced >= max_tokens:
                break
    finally:
        tokens.close()
    tail = "" if hit_stop_string else matcher.flush() + pending.decode("utf-8", errors="replace")
    now = time.monotonic()
    first = first_token_at or now
    yield GenerationChunk(
        text=tail,
        finish_reason=finish,
        usage=Usage(
            prompt_tokens=len(prompt),
            completion_tokens=produced,
            prompt_ms=(first - started) * 1000,
            decode_ms=(now - first) * 1000,
        ),
    )
