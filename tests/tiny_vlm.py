"""A vision-language model pair the tests build themselves with the `gguf` package: a one-layer
llama with SmolLM2's tokenizer and chat template, and a LLaVA-style (CLIP + MLP projector) mmproj,
random weights throughout. It loads and runs through llama.cpp's multimodal path; what it says is
noise, which is all a test of the loading and request path needs."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from tests.live import TEST_MODELS

N_EMBD, N_FF, N_HEAD = 64, 128, 2
# ChatML, as SmolLM2's, but reading content given as parts (text, and images as media markers),
# as the templates of real vision models do.
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
V_EMBD, V_FF, V_HEAD, IMAGE, PATCH = 32, 64, 2, 32, 16


def _tokenizer_fields() -> dict[str, gguf.ReaderField]:
    source = next(TEST_MODELS.glob("smollm2_135m/*.gguf"))
    reader = gguf.GGUFReader(source)
    return {k: f for k, f in reader.fields.items() if k.startswith("tokenizer.")}


def _copy_field(writer: gguf.GGUFWriter, field: gguf.ReaderField) -> None:
    kind = field.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        inner = field.types[1]
        if inner == gguf.GGUFValueType.STRING:
            values: list[object] = [bytes(field.parts[i]).decode() for i in field.data]
        else:
            values = [field.parts[i].tolist()[0] for i in field.data]
        writer.add_array(field.name, values)
    elif kind == gguf.GGUFValueType.STRING:
        writer.add_string(field.name, bytes(field.parts[field.data[0]]).decode())
    elif kind == gguf.GGUFValueType.BOOL:
        writer.add_bool(field.name, bool(field.parts[field.data[0]][0]))
    else:
        writer.add_uint32(field.name, int(field.parts[field.data[0]][0]))


def _random(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)


def build_text_model(path: Path) -> None:
    fields = _tokenizer_fields()
    vocab = len(fields["tokenizer.ggml.tokens"].data)
    rng = np.random.default_rng(1)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-vlm-text")
    writer.add_context_length(1024)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(1)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, field in fields.items():
        if name != "tokenizer.chat_template":
            _copy_field(writer, field)
    writer.add_chat_template(TEMPLATE)
    tensors = {
        "token_embd.weight": _random(rng, vocab, N_EMBD),
        "output_norm.weight": np.ones(N_EMBD, np.float32),
        "output.weight": _random(rng, vocab, N_EMBD),
        "blk.0.attn_norm.weight": np.ones(N_EMBD, np.float32),
        "blk.0.attn_q.weight": _random(rng, N_EMBD, N_EMBD),
        "blk.0.attn_k.weight": _random(rng, N_EMBD, N_EMBD),
        "blk.0.attn_v.weight": _random(rng, N_EMBD, N_EMBD),
        "blk.0.attn_output.weight": _random(rng, N_EMBD, N_EMBD),
        "blk.0.ffn_norm.weight": np.ones(N_EMBD, np.float32),
        "blk.0.ffn_gate.weight": _random(rng, N_FF, N_EMBD),
        "blk.0.ffn_up.weight": _random(rng, N_FF, N_EMBD),
        "blk.0.ffn_down.weight": _random(rng, N_EMBD, N_FF),
    }
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    _finish(writer)


def build_projector(path: Path) -> None:
    rng = np.random.default_rng(2)
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_name("tiny-vlm-mmproj")
    writer.add_description("image encoder for LLaVA (random weights, for tests)")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_bool("clip.has_text_encoder", False)
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_llava_projector", True)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", IMAGE)
    writer.add_uint32("clip.vision.patch_size", PATCH)
    writer.add_uint32("clip.vision.embedding_length", V_EMBD)
    writer.add_uint32("clip.vision.feed_forward_length", V_FF)
    writer.add_uint32("clip.vision.projection_dim", N_EMBD)
    writer.add_uint32("clip.vision.attention.head_count", V_HEAD)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    writer.add_uint32("clip.vision.block_count", 1)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    positions = (IMAGE // PATCH) ** 2 + 1
    tensors = {
        "v.class_embd": _random(rng, V_EMBD),
        "v.patch_embd.weight": _random(rng, V_EMBD, 3, PATCH, PATCH).astype(np.float16),
        "v.position_embd.weight": _random(rng, positions, V_EMBD),
        "v.pre_ln.weight": np.ones(V_EMBD, np.float32),
        "v.pre_ln.bias": np.zeros(V_EMBD, np.float32),
        "mm.0.weight": _random(rng, N_EMBD, V_EMBD),
        "mm.0.bias": np.zeros(N_EMBD, np.float32),
        "mm.2.weight": _random(rng, N_EMBD, N_EMBD),
        "mm.2.bias": np.zeros(N_EMBD, np.float32),
    }
    for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
        tensors[f"v.blk.0.{part}.weight"] = _random(rng, V_EMBD, V_EMBD)
        tensors[f"v.blk.0.{part}.bias"] = np.zeros(V_EMBD, np.float32)
    for norm in ("ln1", "ln2"):
        tensors[f"v.blk.0.{norm}.weight"] = np.ones(V_EMBD, np.float32)
        tensors[f"v.blk.0.{norm}.bias"] = np.zeros(V_EMBD, np.float32)
    tensors["v.blk.0.ffn_down.weight"] = _random(rng, V_FF, V_EMBD)  # fc1 (HF's naming)
    tensors["v.blk.0.ffn_down.bias"] = np.zeros(V_FF, np.float32)
    tensors["v.blk.0.ffn_up.weight"] = _random(rng, V_EMBD, V_FF)  # fc2
    tensors["v.blk.0.ffn_up.bias"] = np.zeros(V_EMBD, np.float32)
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    _finish(writer)


def _finish(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def build_pair(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    text, projector = folder / "tiny-vlm.gguf", folder / "mmproj-tiny-vlm.gguf"
    build_text_model(text)
    build_projector(projector)
    return text, projector
