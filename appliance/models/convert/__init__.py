"""Offline converters from formats found in the wild to what the engines load (numpy only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from appliance.models.convert.bert_gguf import convert_bert
from appliance.models.convert.whisper_ggml import convert_whisper

CONVERTERS: dict[str, Callable[[Path, Path], None]] = {
    "bert-gguf": convert_bert,
    "whisper-ggml": convert_whisper,
}
