"""Cells that leave a slot are retired, not freed, so no sequence's next tokens land below its
own earlier cells: batched answers stay identical to lone ones after a cancellation and after
tails are dropped, and a compaction moves caches without changing a single answer."""

from __future__ import annotations

import llama_cpp
import pytest
from appliance_llama import slots
from appliance_llama.engine import EXACT_ROWS, LlamaEngine
from appliance_llama.sequence import Sequence

from appliance import GenerationChunk

from .conftest import engine_fixture, greedy_sequence

pytestmark = pytest.mark.model
TEMPLATE = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
QUESTIONS = ["Name three colours.", "What is two plus two?", "Write a haiku about the sea."]
SHORT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


engine = engine_fixture(4)


def sequence(
    engine: LlamaEngine, question: str, max_tokens: int, template: str = TEMPLATE
) -> Sequence:
    return greedy_sequence(engine, template.format(question), max_tokens)


def answer_together(
    engine: LlamaEngine, sequences: list[Sequence], leaving: Sequence | None = None, after: int = 0
) -> list[str]:
    """Greedy answers of ``sequences`` decoded together; ``leaving`` is cancelled once it has
    ``after`` tokens. Finished caches are kept, as the server keeps them."""
    texts = {id(s): "" for s in sequences}
    counts = {id(s): 0 for s in sequences}
    live = list(sequences)
    for s in sequences:
        assert engine.admit(s)
    while live:
        for s, chunk in engine.step(live):
            assert isinstance(chunk, GenerationChunk), chunk
            texts[id(s)] += chunk.text
            counts[id(s)] += 1
        if leaving in live and counts[id(leaving)] >= after:
            live.remove(leaving)
            engine.release(leaving, cancelled=True)
        for s in [s for s in live if s.finished]:
            live.remove(s)
            engine.release(s, cancelled=False)
    return [texts[id(s)] for s in sequences]


def lone_then_batched_after_a_cancellation(engine: LlamaEngine, after: int) -> None:
    alone = [answer_together(engine, [sequence(engine, q, 64)])[0] for q in QUESTIONS]
    dragon = sequence(engine, "Tell a very long story about a dragon.", 900)
    others = [sequence(engine, q, 64) for q in QUESTIONS]
    together = answer_together(engine, [dragon, *others], leaving=dragon, after=after)[1:]
    assert together == alone
    assert all(len(text) > 40 for text in alone)


@pytest.mark.parametrize("after", [2, 3])
def test_answers_after_a_cancellation_are_their_lone_answers(
    engine: LlamaEngine, after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slots, "MIN_RETIRED", 100_000)  # retired cells stay: no compaction
    # The prompts reuse their cached prompts (their old answers' cells leave the slots) and the
    # cancelled story's cells lie below the others'. Freed in place, those cells took the
    # others' next tokens: 14 of 36 answers identical over 12 such runs, 36 of 36 retired.
    lone_then_batched_after_a_cancellation(engine, after)
    assert engine.caches.retired > 0 and engine.caches.compactions == 0


def test_a_compaction_changes_no_answer_and_frees_the_retired_cells(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slots, "MIN_RETIRED", 1)  # compact at every step that has retired cells
    lone_then_batched_after_a_cancellation(engine, 3)
    assert engine.caches.compactions > 3
    in_cells = [slot for slot in engine.slots if slot.tokens and slot.parked is None]
    parked = {slot.id: list(slot.tokens) for slot in engine.slots if slot.parked is not None}
    in_cells.append(engine.slots[next(iter(parked))])
    engine.caches._restore(in_cells[-1])  # two caches in cells, one of them to forget
    engine.caches.forget(in_cells[0])
    assert engine.caches.retired > 0
    engine.step([])  # a step compacts first
    assert engine.caches.retired == 0
    assert llama_cpp.llama_memory_seq_pos_max(engine.memory, engine.caches.retired_id) == -1
    kept = in_cells[-1]  # copied back whole
    assert llama_cpp.llama_memory_seq_pos_max(engine.memory, kept.id) == len(kept.tokens) - 1
    assert kept.tokens == parked.pop(kept.id)
    for slot_id, tokens in parked.items():  # parked caches are left as they were
        assert engine.slots[slot_id].parked is not None and engine.slots[slot_id].tokens == tokens


def test_short_prompts_arriving_together_are_read_in_one_step_as_alone(
    engine: LlamaEngine,
) -> None:
    alone = [answer_together(engine, [sequence(engine, q, 32, SHORT)])[0] for q in QUESTIONS]
    for slot in engine.slots:
        engine.caches.forget(slot)  # no cached prefix: every prompt is read whole
    together = [sequence(engine, q, 32, SHORT) for q in QUESTIONS]
    for s in together:
        assert engine.admit(s)
    rows = sum(len(s.prompt) for s in together)
    assert rows < EXACT_ROWS, "short enough to be read in one exact batch"
    first = engine.step(together)
    assert sorted(id(s) for s, _ in first) == sorted(id(s) for s in together)
    assert all(s.n_past == len(s.prompt) for s in together)
    texts = {id(s): "" for s in together}
    for s, chunk in first:
        assert isinstance(chunk, GenerationChunk)
        texts[id(s)] += chunk.text
    while not all(s.finished for s in together):
        for s, chunk in engine.step([s for s in together if not s.finished]):
            assert isinstance(chunk, GenerationChunk)
            texts[id(s)] += chunk.text
    assert [texts[id(s)] for s in together] == alone
    for s in together:
        engine.release(s, cancelled=False)
    long = sequence(engine, "word " * 48, 4, SHORT)
    short = sequence(engine, QUESTIONS[0], 4, SHORT)
    assert engine.admit(long) and engine.admit(short)
    unread = [len(s.prompt) - s.n_past for s in (long, short)]
    assert unread[0] < EXACT_ROWS <= sum(unread)
    engine.step([long, short])
    read = [s.n_past == len(s.prompt) for s in (long, short)]
    assert read == [True, False], "past 64 rows, one prompt a step"


def test_a_cache_that_cannot_be_copied_back_ends_its_answer_with_an_error(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slots, "MIN_RETIRED", 100_000)
    alone = answer_together(engine, [sequence(engine, QUESTIONS[0], 16)])
    reader = sequence(engine, QUESTIONS[1], 16)
    assert engine.admit(reader)  # takes the first's slot: its answer's cells are retired
    engine.step([reader])
    assert reader.slot.tokens and engine.caches.retired > 0
    monkeypatch.setattr(slots, "MIN_RETIRED", 1)
    monkeypatch.setattr(llama_cpp, "llama_state_seq_set_data", lambda *args: 0)
    outputs = engine.step([reader])  # compacts first; the copy back fails
    assert [(s, type(o).__name__) for s, o in outputs] == [(reader, "Overloaded")]
    assert "lost this answer's context" in str(outputs[0][1]) and reader.finished
    engine.release(reader, cancelled=True)
    monkeypatch.undo()
    assert answer_together(engine, [sequence(engine, QUESTIONS[0], 16)]) == alone  # still serving
