"""Plain greedy rows are picked by one argmax over their logits, not by a sampler chain: the same
tokens as llama.cpp's greedy sampler, and a chain still for anything that changes the logits."""

from __future__ import annotations

import pytest
from appliance_llama.engine import LlamaEngine
from appliance_llama.sequence import Sequence

from appliance import GenerationChunk, SamplingOptions

from .conftest import engine_fixture

pytestmark = pytest.mark.model
PROMPTS = [
    "<|im_start|>user\nTell a story about a fox.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nList five fruits.<|im_end|>\n<|im_start|>assistant\n",
]


engine = engine_fixture(2, "module")


def answers(engine: LlamaEngine, sampling: SamplingOptions) -> tuple[list[str], list[bool]]:
    """Both prompts answered together; (texts, whether each sequence got a sampler chain)."""
    sequences = [
        Sequence(engine.tokenize(p, add_bos=False, special=True), sampling, limit=1024)
        for p in PROMPTS
    ]
    for sequence in sequences:
        assert engine.admit(sequence)
    chained = [s.sampler is not None for s in sequences]
    texts = {id(s): "" for s in sequences}
    while not all(s.finished for s in sequences):
        for sequence, chunk in engine.step(sequences):
            assert isinstance(chunk, GenerationChunk)
            texts[id(sequence)] += chunk.text
    for sequence in sequences:
        engine.release(sequence, cancelled=True)  # both runs start from nothing
    return [texts[id(s)] for s in sequences], chained


def test_greedy_rows_pick_what_the_greedy_chain_picks(engine: LlamaEngine) -> None:
    fast, fast_chained = answers(engine, SamplingOptions(temperature=0, max_tokens=48))
    # A zero bias changes no logit but needs the chain (penalties, bias, greedy sampler).
    chain_sampling = SamplingOptions(temperature=0, max_tokens=48, logit_bias=((0, 0.0),))
    chain, chain_chained = answers(engine, chain_sampling)
    assert fast_chained == [False, False]
    assert chain_chained == [True, True]
    assert fast == chain and all(len(text) > 40 for text in fast)


def test_anything_that_changes_the_logits_keeps_its_chain(engine: LlamaEngine) -> None:
    for sampling in (
        SamplingOptions(temperature=0.7, seed=1, max_tokens=4),
        SamplingOptions(temperature=0, repeat_penalty=1.3, max_tokens=4),
        SamplingOptions(temperature=0, frequency_penalty=0.5, max_tokens=4),
        SamplingOptions(temperature=0, presence_penalty=0.5, max_tokens=4),
    ):
        _, chained = answers(engine, sampling)
        assert chained == [True, True], sampling
    fox = engine.tokenize(" fox", add_bos=False, special=False)
    assert len(fox) == 1
    plain, _ = answers(engine, SamplingOptions(temperature=0, max_tokens=48))
    banned, _ = answers(
        engine, SamplingOptions(temperature=0, max_tokens=48, logit_bias=((fox[0], -100.0),))
    )
    assert " fox" in plain[0] and " fox" not in banned[0]
