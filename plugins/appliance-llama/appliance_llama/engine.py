"""Continuous batching on llama.cpp's low-level API: slots over one unified KV pool.

One context holds ``slots`` sequences (``n_seq_max``, ``kv_unified``: a single long conversation
may use the whole pool while the others are idle). Every :meth:`LlamaEngine.step` builds one
``llama_batch``: the last sampled token of every decoding sequence, then prompt tokens of newly
admitted sequences in bounded chunks (so a long new prompt never stalls people already reading an
answer). Logits are requested only for rows that sample. A new sequence takes the free slot whose
cached tokens share the longest prefix with its prompt and keeps that prefix.

A short prompt that arrives while a step of decode rows runs cuts that step short when less than
half of it is done (:meth:`LlamaEngine.interrupt_for`): the prompt is read at once, and the
readers' rows are decoded again in the next step; at most half a step is lost, never twice in a
row for the same readers.
"""

from __future__ import annotations

import ctypes
import logging
import math
import re
import threading
import time
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from appliance import ApplianceError, BadRequest, GenerationChunk, Overloaded
from appliance_llama.interrupt import ABORTED, StepInterrupt
from appliance_llama.rpc import Split
from appliance_llama.sampling import build_chain, free_chain, plain_greedy
from appliance_llama.sequence import Sequence
from appliance_llama.slots import Slots, common_prefix

log = logging.getLogger(__name__)
N_BATCH = 512
# While others are reading answers, a new prompt is read in slices sized so that one step stays
# near this long (from the measured cost of a batch row): larger slices prefill a little faster
# but lengthen everyone's gap between tokens. Measured here (SmolLM2-135M, 2 cores): a row costs
# ~7 ms in prefill, so slices are ~30 tokens; on a GPU they grow to the whole batch.
STEP_TARGET_S = 0.2
MIN_CHUNK = 16
EXACT_ROWS = 64
"""From this many rows in a batch llama.cpp's CPU flash attention takes another (tiled) path."""

Output = tuple[Sequence, GenerationChunk | ApplianceError]
GGML_LOG_LEVEL_ERROR = 4


# What llama.cpp says of a step that StepInterrupt cut short: expected, so not an error here.
# (GGML_STATUS_ABORTED is 1, llama_decode's "aborted" 2.)
_INTERRUPTED_STEP = re.compile(
    r"((failed with error|compute status:) 1|failed to decode, ret = 2)$"
)


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _llama_log(level: int, text: bytes, user_data: Any) -> None:
    """llama.cpp's errors go to our log; the rest (load chatter, warnings) is dropped."""
    if level == GGML_LOG_LEVEL_ERROR:
        line = text.decode("utf-8", errors="replace").rstrip()
        if not _INTERRUPTED_STEP.search(line):
            log.error("llama.cpp: %s", line)


llama_cpp.llama_log_set(_llama_log, ctypes.c_void_p(0))


def _left(sequence: Sequence) -> int:
    """Prompt tokens of ``sequence`` not read yet."""
    return len(sequence.prompt) - sequence.n_past


def _still_reading(reader: Sequence, waiting: Sequence) -> bool:
    """Whether ``reader`` is still reading a prefix that ``waiting`` could share, at least
    MIN_CHUNK tokens longer than what ``waiting`` holds."""
    shared = min(common_prefix(reader.prompt, waiting.prompt), len(waiting.prompt) - 1)
    return reader.n_past < shared and waiting.n_past + MIN_CHUNK <= shared


def split_params(params: Any, split: Split) -> list[Any]:
    """Point llama_model_params at the split's devices; returns the arrays to keep alive until
    the model is loaded (llama.cpp copies them)."""
    devices = (ctypes.c_void_p * (len(split.devices) + 1))(*(d.handle for d in split.devices))
    shares = (ctypes.c_float * llama_cpp.llama_max_devices())(*split.shares)
    params.devices = ctypes.addressof(devices)
    params.n_gpu_layers = split.gpu_layers
    params.tensor_split = shares
    return [devices, shares]


class LlamaEngine:
    """A loaded model with its batched context. Only the model's worker thread calls it."""

    def __init__(
        self,
        path: Path,
        *,
        pool_tokens: int,
        slots: int,
        n_threads: int,
        embeddings: bool = False,
        n_batch: int = N_BATCH,
        split: Split | None = None,
        parked_budget: int | None = None,
    ) -> None:
        model_params = llama_cpp.llama_model_default_params()
        keep: list[Any] = []
        if split is not None:
            keep = split_params(model_params, split)
        self.model = internals.LlamaModel(path_model=str(path), params=model_params, verbose=False)
        del keep
        self.devices = split.labels if split is not None else ("cpu",)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = pool_tokens
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        # A chat context's last sequence id holds retired cells (see slots.py).
        params.n_seq_max = slots if embeddings else slots + 1
        params.kv_unified = True
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        params.embeddings = embeddings
        self.context = internals.LlamaContext(model=self.model, params=params, verbose=False)
        self.ctx = self.context.ctx
        self.memory = self.context.memory
        self.vocab = self.model.vocab
        self.n_vocab = self.model.n_vocab()
        self.n_batch = n_batch
        self.pool_tokens = llama_cpp.llama_n_ctx(self.ctx)
        self.batch = internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        # One slot's context of parked caches by default, as the hardware choice counts them.
        default_budget = self.pool_tokens // slots if slots > 1 else 0
        budget = parked_budget if parked_budget is not None else default_budget
        self.caches = Slots(self.ctx, self.memory, slots, budget)
        self.slots = self.caches.all
        self._piece = ctypes.create_string_buffer(256)
        self.row_s = 0.0
        """Seconds one batch row costs in a step with prompt rows (moving average)."""
        self.decode_s = 0.0
        """Seconds a step of decode rows only takes (moving average)."""
        # Layers on other boxes (RPC) run outside the callback's reach: no interrupting there.
        self._interrupt = StepInterrupt(self.ctx) if split is None else None
        self._step_lock = threading.Lock()
        self._interruptible_since: float | None = None
        """When the running step (decode rows only) began, while it may be cut short."""
        self._read_alone = False
        """Whether the last step read a prompt while the others waited."""
        self.interrupted = 0
        """Steps cut short for a newcomer since load."""

    def close(self) -> None:
        for slot in self.slots:
            if slot.sequence is not None:
                free_chain(slot.sequence.sampler)
                slot.sequence.sampler = None
        self.batch.close()  # type: ignore[no-untyped-call]
        self.context.close()  # type: ignore[no-untyped-call]
        self.model.close()  # type: ignore[no-untyped-call]

    # Text and tokens.
    def tokenize(self, text: str, add_bos: bool, special: bool) -> list[int]:
        try:
            data = text.encode()
        except UnicodeEncodeError:
            raise BadRequest(
                "the text is not valid Unicode (it contains a lone surrogate such as \\ud800)"
            ) from None
        return list(self.model.tokenize(data, add_bos=add_bos, special=special))

    def piece(self, token: int) -> bytes:
        n = llama_cpp.llama_token_to_piece(
            self.vocab, token, self._piece, len(self._piece), 0, False
        )
        if n < 0:
            self._piece = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece, -n, 0, False)
        return self._piece.raw[:n]

    def token_text(self, token: int) -> str:
        return self.model.token_get_text(token) if token >= 0 else ""

    # Slots.
    def busy(self) -> int:
        return self.caches.busy()

    def admit(self, sequence: Sequence) -> bool:
        taken = self.caches.take(sequence.prompt)
        if taken is None:
            return False
        slot, keep = taken
        sequence.n_past = sequence.cached = keep
        sequence.slot = slot
        sequence.sampler = (
            None
            if plain_greedy(sequence.sampling, sequence.grammar)
            else build_chain(self.vocab, self.n_vocab, sequence.sampling, sequence.grammar)
        )
        sequence.admitted_at = time.monotonic()
        slot.sequence = sequence
        return True

    def release(self, sequence: Sequence, cancelled: bool) -> None:
        free_chain(sequence.sampler)
        sequence.sampler = None
        slot = sequence.slot
        if slot is None:
            return
        sequence.slot = None
        self.caches.give_back(slot, keep_cache=sequence.finished and not cancelled)

    def put_row(self, row: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        """Row ``row`` of the batch: ``token`` at ``pos`` of sequence ``seq_id``."""
        batch = self.batch.batch
        batch.token[row] = token
        batch.pos[row] = pos
        batch.n_seq_id[row] = 1
        batch.seq_id[row][0] = seq_id
        batch.logits[row] = logits

    # One step.
    def step(self, sequences: Seq[Sequence]) -> list[Output]:
        outputs = self._fail_lost(self.caches.compact_if_worth())
        live = [s for s in sequences if not s.finished]
        with_prefill = True
        while live:
            rows, prefill, decoded = self._fill(live, with_prefill)
            started = self._begin(interruptible=not prefill and not self._read_alone)
            status = llama_cpp.llama_decode(self.ctx, self.batch.batch)
            elapsed = self._end(started)
            if status == 0:
                if prefill:
                    cost = elapsed / self.batch.batch.n_tokens
                    self.row_s = cost if not self.row_s else 0.7 * self.row_s + 0.3 * cost
                else:
                    self.decode_s = (
                        elapsed if not self.decode_s else 0.8 * self.decode_s + 0.2 * elapsed
                    )
                self._read_alone = bool(prefill) and not decoded
                self._advance(decoded, prefill)
                outputs += self._sample(rows)
                return outputs
            if status == ABORTED:  # cut short for a newcomer; llama.cpp dropped this batch's cells
                self.interrupted += 1
                return outputs
            if status != 1:
                raise RuntimeError(f"llama_decode failed with status {status}")
            # No room in the KV pool: park idle caches, then defer prompts, then fail the
            # longest sequence; never touch another sequence's cells.
            dropped, lost = self.caches.make_room()
            if dropped:
                outputs += self._fail_lost(lost)
                live = [s for s in live if not s.finished]
                continue
            if with_prefill and prefill and any(not s.prefilling for s in live):
                with_prefill = False
                continue
            victim = max(live, key=lambda s: s.n_past + len(s.prompt))
            live.remove(victim)
            victim.finished = True
            self.caches.forget(victim.slot)  # the retry's make_room frees its cells
            outputs.append((victim, Overloaded("the box's context memory is full; retry shortly")))
        return outputs

    def _fail_lost(self, slots: list[Any]) -> list[Output]:
        """Sequences whose cache a compaction could not copy back (it never happened here:
        the pool held them before) end with an error rather than a wrong answer."""
        outputs: list[Output] = []
        for slot in slots:
            slot.sequence.finished = True
            outputs.append((slot.sequence, Overloaded("the box lost this answer's context")))
        return outputs

    # Cutting a step short (the only methods called from another thread).
    def _begin(self, interruptible: bool) -> float:
        started = time.perf_counter()
        with self._step_lock:
            if self._interrupt is not None:
                self._interrupt.clear()
                if interruptible and self._interrupt.available:
                    self._interruptible_since = started
        return started

    def _end(self, started: float) -> float:
        with self._step_lock:
            self._interruptible_since = None
        return time.perf_counter() - started

    def interrupt_for(self, sequence: Sequence) -> bool:
        """Cut the running step short for ``sequence`` when that pays: the step decodes rows
        only, less than half of it is done, a slot is free, and the new prompt (past the best
        cached prefix) would be read in one step."""
        with self._step_lock:
            since = self._interruptible_since
            if since is None or self._interrupt is None or not self.decode_s:
                return False
            if time.perf_counter() - since > self.decode_s / 2:
                return False
            # Nothing below races the worker: it is inside llama_decode until the lock is free.
            free = self.caches.free()
            if not free:
                return False
            budget = self._prefill_budget(len(self.slots) - len(free))
            # The worker waits on this lock when its step ends: the prefixes (a long history) are
            # compared only for a prompt too long to be read at once without them.
            if len(sequence.prompt) > budget:
                cached = self.caches.longest_cached(sequence.prompt)
                if len(sequence.prompt) - cached > budget:
                    return False
            self._interrupt.set()
            self._interruptible_since = None
            return True

    def _fill(
        self, sequences: list[Sequence], with_prefill: bool
    ) -> tuple[list[tuple[Sequence, int]], list[tuple[Sequence, int]], list[Sequence]]:
        """The batch of one step: (rows that sample, prompt slices read, sequences decoded)."""
        batch = self.batch.batch
        rows: list[tuple[Sequence, int]] = []
        prefill: list[tuple[Sequence, int]] = []
        decoding = [s for s in sequences if not s.prefilling]
        budget = self._prefill_budget(len(decoding)) if with_prefill else 0
        # One prompt a step, or several short ones: llama.cpp's CPU flash attention takes a
        # tiled path for a batch of EXACT_ROWS rows or more (ggml-cpu/ops.cpp), so prompts read
        # together in a larger batch would not get the keys and values each gets alone. Under
        # it every row is computed as alone (measured: a decode row's logits are the same
        # beside 62 rows of another prompt, up to 0.66 apart beside 63); a larger prompt slice
        # beside readers can make them drift later in their answers.
        waiting = self._readable([s for s in sequences if s.prefilling]) if budget > 0 else []
        reading = waiting[:1]
        if reading and _left(reading[0]) <= budget:
            # A prompt this step finishes is read alone: the others wait for it either way, and
            # its first token then waits for none of their rows (on a CPU every row costs).
            # Other prompts that then finish within EXACT_ROWS are read with it.
            decoding = []
            total = _left(reading[0])
            most = min(EXACT_ROWS - 1, self.n_batch)
            for other in waiting[1:]:
                if total + _left(other) > most:
                    break
                reading.append(other)
                total += _left(other)
            budget = max(budget, total)  # each of them is read whole
        n = 0
        for seq in decoding:
            assert seq.next_token is not None
            rows.append((seq, n))
            self.put_row(n, seq.next_token, seq.n_past, seq.slot.id, True)
            n += 1
        for prompt in reading:
            start = prompt.n_past
            take = min(_left(prompt), budget)
            for pos in range(start, start + take):
                last = pos == len(prompt.prompt) - 1
                if last:
                    rows.append((prompt, n))
                self.put_row(n, prompt.prompt[pos], pos, prompt.slot.id, last)
                n += 1
            prefill.append((prompt, take))
        batch.n_tokens = n
        return rows, prefill, decoding

    def _readable(self, waiting: list[Sequence]) -> list[Sequence]:
        """The prompts to read now. A prompt that has read nothing of its own yet, whose
        prefix an earlier one is still reading (a system prompt or template they share), waits
        for those cells rather than read it again beside it; then it takes the longest prefix
        another slot's cells hold. Once it reads, it keeps its own cells."""
        ready = []
        for i, seq in enumerate(waiting):
            if seq.n_past == seq.cached:
                if any(_still_reading(other, seq) for other in waiting[:i]):
                    continue
                seq.n_past = seq.cached = self.caches.adopt(seq.slot, seq.prompt)
            ready.append(seq)
        return ready

    def _prefill_budget(self, decoding: int) -> int:
        room = self.n_batch - decoding
        if not decoding:
            return room  # nobody is waiting for a token: read the prompt as fast as possible
        if not self.row_s:
            return min(room, MIN_CHUNK)
        return max(MIN_CHUNK, min(room, int(STEP_TARGET_S / self.row_s) - decoding))

    def _advance(self, decoded: list[Sequence], prefill: list[tuple[Sequence, int]]) -> None:
        for seq in decoded:
            assert seq.next_token is not None
            seq.slot.tokens.append(seq.next_token)
            seq.n_past += 1
        for seq, take in prefill:
            seq.slot.tokens.extend(seq.prompt[seq.n_past : seq.n_past + take])
            seq.n_past += take

    def _sample(self, rows: list[tuple[Sequence, int]]) -> list[Output]:
        outputs: list[Output] = []
        for seq, row in rows:
            if seq.sampler is None:  # plain greedy (see admit)
                token = int(self._logits(row).argmax())
            else:
                token = llama_cpp.llama_sampler_sample(seq.sampler, self.ctx, row)
            is_end = bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))
            piece = b"" if is_end else self.piece(token)
            logprobs = None
            if seq.sampling.logprobs and not is_end:
                logprobs = self._logprobs(row, token, seq.sampling.top_logprobs)
            outputs += [(seq, chunk) for chunk in seq.accept(token, piece, is_end, logprobs)]
        return outputs

    def _logits(self, row: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        pointer = llama_cpp.llama_get_logits_ith(self.ctx, row)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def _logprobs(self, row: int, token: int, top: int) -> dict[str, Any]:
        logits = self._logits(row).astype(np.float64)
        shifted = logits - float(np.max(logits))
        log_probs = shifted - math.log(float(np.exp(shifted).sum()))
        entry: dict[str, Any] = {"logprob": float(log_probs[token]), "top_logprobs": []}
        for candidate in np.argsort(-log_probs)[:top] if top else []:
            text = self.piece(int(candidate)).decode("utf-8", errors="replace")
            entry["top_logprobs"].append(
                {
                    "token": text,
                    "logprob": float(log_probs[candidate]),
                    "bytes": list(text.encode()),
                }
            )
        return entry
