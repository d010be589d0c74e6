"""BERT (sentence-transformers) safetensors to a GGUF file llama.cpp loads for embeddings.

Follows llama.cpp's own converter (``conversion/bert.py`` in its sources) without torch: the
WordPiece vocabulary becomes llama.cpp's "phantom space" form, special tokens come from the
model's tokenizer files through ``gguf.SpecialVocab``, and mean pooling is recorded.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

from appliance.errors import BadRequest

_LAYER_MAP = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
_TOP_MAP = {
    "embeddings.word_embeddings": "token_embd",
    "embeddings.position_embeddings": "position_embd",
    "embeddings.token_type_embeddings": "token_types",
    "embeddings.LayerNorm": "token_embd_norm",
}
_SKIP = ("embeddings.position_ids", "pooler.")
_POOLING = {
    "pooling_mode_mean_tokens": gguf.PoolingType.MEAN,
    "pooling_mode_cls_token": gguf.PoolingType.CLS,
}


def gguf_tensor_name(hf_name: str) -> str | None:
    name = hf_name.removeprefix("bert.")
    if name.startswith(_SKIP):
        return None
    base, _, kind = name.rpartition(".")
    kind = {"gamma": "weight", "beta": "bias"}.get(kind, kind)
    if base in _TOP_MAP:
        return f"{_TOP_MAP[base]}.{kind}"
    match = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", base)
    if match and match.group(2) in _LAYER_MAP:
        return f"blk.{match.group(1)}.{_LAYER_MAP[match.group(2)]}.{kind}"
    raise BadRequest(f"unexpected tensor {hf_name!r} in a BERT model")


def _pooling(model_dir: Path) -> int:
    config = model_dir / "1_Pooling" / "config.json"
    if not config.is_file():
        return int(gguf.PoolingType.MEAN)
    modes = json.loads(config.read_text())
    for key, kind in _POOLING.items():
        if modes.get(key):
            return int(kind)
    raise BadRequest(f"unsupported pooling in {config}")


def _vocab(model_dir: Path) -> tuple[list[str], list[int]]:
    tokens = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    specials: set[str] = set()
    tokenizer_json = model_dir / "tokenizer.json"
    if tokenizer_json.is_file():
        added = json.loads(tokenizer_json.read_text()).get("added_tokens", [])
        specials = {t["content"] for t in added if t.get("special")}
    types = [
        int(gguf.TokenType.CONTROL) if t in specials else int(gguf.TokenType.NORMAL) for t in tokens
    ]

    def phantom(token: str, token_type: int) -> str:
        if token_type == gguf.TokenType.CONTROL:
            return token
        return token[2:] if token.startswith("##") else "\u2581" + token

    return [phantom(t, k) for t, k in zip(tokens, types, strict=True)], types


def convert_bert(model_dir: Path, out_path: Path) -> None:
    """Write ``out_path`` (F16 weights, F32 norms and biases) from a sentence-transformers dir."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise BadRequest(f"{model_dir} has no config.json; is it a BERT model folder?")
    hp = json.loads(config_path.read_text())
    if hp.get("model_type") != "bert":
        raise BadRequest(f"{model_dir} is a {hp.get('model_type')!r} model, not BERT")
    tensors = load_file(str(model_dir / "model.safetensors"))
    writer = gguf.GGUFWriter(str(out_path), "bert")
    writer.add_name(hp.get("_name_or_path", "bert").rsplit("/", 1)[-1])
    writer.add_context_length(hp["max_position_embeddings"])
    writer.add_embedding_length(hp["hidden_size"])
    writer.add_feed_forward_length(hp["intermediate_size"])
    writer.add_block_count(hp["num_hidden_layers"])
    writer.add_head_count(hp["num_attention_heads"])
    writer.add_layer_norm_eps(hp["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType(_pooling(model_dir)))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    tokens, types = _vocab(model_dir)
    writer.add_token_type_count(hp.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # gguf has no slot for BERT's [CLS] id and says so; llama.cpp uses bos=[CLS] instead.
    logging.getLogger("gguf.vocab").setLevel(logging.ERROR)
    gguf.SpecialVocab(model_dir, n_vocab=len(tokens)).add_to_gguf(writer)
    for hf_name in sorted(tensors):
        name = gguf_tensor_name(hf_name)
        if name is None:
            continue
        data = tensors[hf_name]
        # ggml adds these to f32 activations, which needs f32 on the CPU backend.
        keep_f32 = data.ndim != 2 or name.startswith(("position_embd", "token_types"))
        data = data.astype(np.float32) if keep_f32 else data.astype(np.float16)
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
