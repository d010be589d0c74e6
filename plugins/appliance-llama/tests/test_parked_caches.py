"""Idle caches leave the KV cells while others decode (parked in host memory), and come back
for the next turn with the same answer."""

from __future__ import annotations

import llama_cpp
import pytest
from appliance_llama.engine import LlamaEngine
from appliance_llama.sequence import Sequence

from .conftest import default_chat_engine, engine_fixture, greedy_sequence

pytestmark = pytest.mark.model
TURN = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


engine = engine_fixture(2)


def sequence_for(engine: LlamaEngine, text: str, tokens: int = 24) -> Sequence:
    return greedy_sequence(engine, text, tokens)


def run(engine: LlamaEngine, sequence: Sequence) -> tuple[str, int]:
    """Admit and decode ``sequence`` to its end; (its text, prompt tokens found cached)."""
    assert engine.admit(sequence)
    cached = sequence.n_past
    pieces = []
    while not sequence.finished:
        pieces += [chunk.text for _, chunk in engine.step([sequence]) if chunk.text]  # type: ignore[union-attr]
    return "".join(pieces), cached


def cells_of(engine: LlamaEngine, slot_id: int) -> int:
    return int(llama_cpp.llama_memory_seq_pos_max(engine.memory, slot_id)) + 1


def second_turn(engine: LlamaEngine, park: bool) -> tuple[str, int]:
    """A first turn, released while another sequence holds a slot (``park``) or not; then the
    next turn of the same conversation. Returns (second answer, tokens reused)."""
    first = sequence_for(engine, TURN.format("Name a colour."))
    run(engine, first)
    slot_id = first.slot.id
    other = None
    if park:
        other = sequence_for(engine, "Hello", 4)
        assert engine.admit(other)
    engine.release(first, cancelled=False)
    if park:
        assert engine.slots[slot_id].parked is not None
        assert cells_of(engine, slot_id) == 0, "a parked cache holds no cells"
        assert other is not None
        engine.release(other, cancelled=True)
    else:
        assert engine.slots[slot_id].parked is None
        assert cells_of(engine, slot_id) == len(engine.slots[slot_id].tokens)
    history = list(engine.slots[slot_id].tokens)
    second = sequence_for(engine, "")
    second.prompt = history + engine.tokenize(
        "<|im_end|>\n" + TURN.format("And another?"), add_bos=False, special=True
    )
    text, cached = run(engine, second)
    engine.release(second, cancelled=True)
    return text, cached


def test_a_parked_cache_comes_back_for_the_next_turn_and_answers_the_same(
    engine: LlamaEngine,
) -> None:
    in_cells, kept_in_cells = second_turn(engine, park=False)
    for slot in engine.slots:
        engine.caches.forget(slot)
    before = engine.caches.restored
    parked, kept_parked = second_turn(engine, park=True)
    assert engine.caches.restored == before + 1, "the next turn restored the parked cache"
    assert kept_parked == kept_in_cells and kept_parked > 20
    assert parked == in_cells and parked


def test_parked_caches_stay_within_their_budget() -> None:
    engine = default_chat_engine(3)
    try:
        done = [sequence_for(engine, TURN.format(f"Count to {n}."), 16) for n in (3, 4)]
        for sequence in done:
            run(engine, sequence)
        size = max(len(s.prompt) + s.produced for s in done)
        engine.caches.parked_budget = size + size // 2  # room for one of them, not both
        busy = sequence_for(engine, "Hi", 2)
        assert engine.admit(busy)
        first_slot, second_slot = done[0].slot, done[1].slot
        engine.release(done[0], cancelled=False)
        engine.release(done[1], cancelled=False)
        assert second_slot.parked is not None
        assert first_slot.parked is None and not first_slot.tokens, "the older one is dropped"
        assert cells_of(engine, first_slot.id) == 0
        engine.release(busy, cancelled=True)
    finally:
        engine.close()
