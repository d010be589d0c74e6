"""Cutting a running step short for a newcomer: the step produces nothing, loses nothing, and the
sequences in it answer exactly as they would have."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from appliance_llama.engine import LlamaEngine
from appliance_llama.sequence import Sequence

from .conftest import engine_fixture, greedy_sequence

pytestmark = pytest.mark.model
STORY = "<|im_start|>user\nTell a story about a fox.<|im_end|>\n<|im_start|>assistant\n"
QUESTION = "<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n"


engine = engine_fixture(2, "module")


def sequence(engine: LlamaEngine, text: str, tokens: int = 40) -> Sequence:
    return greedy_sequence(engine, text, tokens)


def answer(engine: LlamaEngine, cut_short: bool) -> tuple[str, int]:
    """The story's greedy answer; with ``cut_short``, every decode step is cut short once by a
    newcomer asking for its turn (and then run again). Returns (text, steps cut short)."""
    story = sequence(engine, STORY)
    assert engine.admit(story)
    newcomer = sequence(engine, QUESTION)
    pieces: list[str] = []
    cut = 0
    while not story.finished:
        outputs: list[object] = []
        stepping = threading.Thread(target=lambda out=outputs: out.extend(engine.step([story])))
        stepping.start()
        while cut_short and story.next_token is not None and stepping.is_alive():
            if engine.interrupt_for(newcomer):
                cut += 1
                break
            time.sleep(0.0005)
        stepping.join()
        if cut_short and not outputs:
            outputs = list(engine.step([story]))  # the same rows, decoded again
        pieces += [chunk.text for _, chunk in outputs if getattr(chunk, "text", "")]  # type: ignore[attr-defined]
    engine.release(story, cancelled=True)  # forget its cells: both runs start from nothing
    return "".join(pieces), cut


def test_a_step_cut_short_loses_nothing(
    engine: LlamaEngine, caplog: pytest.LogCaptureFixture
) -> None:
    assert engine._interrupt is not None and engine._interrupt.available
    alone, _ = answer(engine, cut_short=False)
    before = engine.interrupted
    with caplog.at_level(logging.ERROR):
        interrupted, cut = answer(engine, cut_short=True)
    assert not caplog.records, "a step cut short is expected, not an error to log"
    assert cut >= 10, f"only {cut} of ~40 steps were cut short"
    assert engine.interrupted - before == cut
    assert interrupted == alone and alone


def test_only_a_prompt_that_is_read_in_one_step_cuts_a_step_short(engine: LlamaEngine) -> None:
    story = sequence(engine, STORY, tokens=400)
    assert engine.admit(story)
    long_prompt = sequence(engine, "word " * 1500)
    try:
        for _ in range(3):  # a prompt step and decode steps, so decode_s is measured
            engine.step([story])
        stepping = threading.Thread(target=lambda: engine.step([story]))
        stepping.start()
        asked = False
        while stepping.is_alive():
            asked = asked or engine.interrupt_for(long_prompt)
            time.sleep(0.0005)
        stepping.join()
        assert not asked, "a prompt of many steps cannot be served by cutting one step short"
    finally:
        engine.release(story, cancelled=True)
