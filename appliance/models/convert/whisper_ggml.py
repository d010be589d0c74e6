"""CTranslate2 Whisper (model.bin v6) to whisper.cpp's ggml file, with numpy only.

CTranslate2 fuses the self-attention Q/K/V projections (and the cross-attention K/V) and keeps a
zero key bias; whisper.cpp wants them apart and has no key bias. Conv biases become [n, 1] and,
like 1-D tensors and positional embeddings, stay f32; other weights are f16. The vocabulary is
GPT-2 byte-level BPE, written as raw bytes; the mel filters are the Slaney filterbank that
openai-whisper ships (librosa's algorithm, reimplemented here).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from appliance.errors import BadRequest

GGML_MAGIC = 0x67676D6C
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
F32_NAMES = {
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
}


def read_ctranslate2(path: Path) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin (format version 6), aliases resolved."""
    with path.open("rb") as fh:

        def u32() -> int:
            return int(struct.unpack("<I", fh.read(4))[0])

        def text() -> str:
            (size,) = struct.unpack("<H", fh.read(2))
            return fh.read(size).rstrip(b"\0").decode()

        version = u32()
        if version != 6:
            raise BadRequest(f"{path} is CTranslate2 model format {version}; only 6 is supported")
        spec = text()
        if spec != "WhisperSpec":
            raise BadRequest(f"{path} holds a {spec}, not a Whisper model")
        u32()  # spec revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(u32()):
            name = text()
            rank = fh.read(1)[0]
            shape = [u32() for _ in range(rank)]
            dtype = CT2_DTYPES.get(fh.read(1)[0])
            size = u32()
            raw = fh.read(size)
            if dtype is None:
                continue
            variables[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
        for _ in range(u32()):
            alias, target = text(), text()
            variables[alias] = variables[target]
    return variables


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    mels = freq / f_sp
    log_region = freq >= min_log_hz
    mels[log_region] = min_log_mel + np.log(freq[log_region] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    freqs = f_sp * mels
    log_region = mels >= min_log_mel
    freqs[log_region] = min_log_hz * np.exp(logstep * (mels[log_region] - min_log_mel))
    return freqs


def mel_filters(n_mels: int = 80, sr: int = 16000, n_fft: int = 400) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) with Slaney scale and norm: [n_mels, 1 + n_fft/2]."""
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    limits = _hz_to_mel(np.array([0.0, sr / 2.0]))
    mel_f = _mel_to_hz(np.linspace(limits[0], limits[1], n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, len(fft_freqs)))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def vocabulary_bytes(vocabulary: list[str]) -> list[bytes]:
    """Regular BPE tokens as raw bytes, up to the first special ``<|...|>`` token."""
    decoder = _byte_decoder()
    out = []
    for token in vocabulary:
        if re.fullmatch(r"<\|.*\|>", token):
            break
        out.append(bytes(decoder[ch] for ch in token))
    return out


def _split(weight: np.ndarray, parts: int) -> list[np.ndarray]:
    return list(np.split(weight, parts, axis=0))


def whisper_tensors(
    v: dict[str, np.ndarray], n_enc: int, n_dec: int
) -> Iterator[tuple[str, np.ndarray]]:
    def layer_common(src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
        for ct, wc in (("gamma", "weight"), ("beta", "bias")):
            yield f"{dst}.attn_ln.{wc}", v[f"{src}/self_attention/layer_norm/{ct}"]
            yield f"{dst}.mlp_ln.{wc}", v[f"{src}/ffn/layer_norm/{ct}"]
        q, k, val = _split(v[f"{src}/self_attention/linear_0/weight"], 3)
        qb, _, vb = _split(v[f"{src}/self_attention/linear_0/bias"], 3)
        yield f"{dst}.attn.query.weight", q
        yield f"{dst}.attn.query.bias", qb
        yield f"{dst}.attn.key.weight", k
        yield f"{dst}.attn.value.weight", val
        yield f"{dst}.attn.value.bias", vb
        yield f"{dst}.attn.out.weight", v[f"{src}/self_attention/linear_1/weight"]
        yield f"{dst}.attn.out.bias", v[f"{src}/self_attention/linear_1/bias"]
        for i, j in ((0, 0), (1, 2)):
            yield f"{dst}.mlp.{j}.weight", v[f"{src}/ffn/linear_{i}/weight"]
            yield f"{dst}.mlp.{j}.bias", v[f"{src}/ffn/linear_{i}/bias"]

    yield "encoder.positional_embedding", v["encoder/position_encodings/encodings"]
    for conv in ("conv1", "conv2"):
        yield f"encoder.{conv}.weight", v[f"encoder/{conv}/weight"]
        yield f"encoder.{conv}.bias", v[f"encoder/{conv}/bias"].reshape(-1, 1)
    for i in range(n_enc):
        yield from layer_common(f"encoder/layer_{i}", f"encoder.blocks.{i}")
    yield "encoder.ln_post.weight", v["encoder/layer_norm/gamma"]
    yield "encoder.ln_post.bias", v["encoder/layer_norm/beta"]
    yield "decoder.positional_embedding", v["decoder/position_encodings/encodings"]
    yield "decoder.token_embedding.weight", v["decoder/embeddings/weight"]
    for i in range(n_dec):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        yield from layer_common(src, dst)
        yield f"{dst}.cross_attn_ln.weight", v[f"{src}/attention/layer_norm/gamma"]
        yield f"{dst}.cross_attn_ln.bias", v[f"{src}/attention/layer_norm/beta"]
        yield f"{dst}.cross_attn.query.weight", v[f"{src}/attention/linear_0/weight"]
        yield f"{dst}.cross_attn.query.bias", v[f"{src}/attention/linear_0/bias"]
        k, val = _split(v[f"{src}/attention/linear_1/weight"], 2)
        _, vb = _split(v[f"{src}/attention/linear_1/bias"], 2)
        yield f"{dst}.cross_attn.key.weight", k
        yield f"{dst}.cross_attn.value.weight", val
        yield f"{dst}.cross_attn.value.bias", vb
        yield f"{dst}.cross_attn.out.weight", v[f"{src}/attention/linear_2/weight"]
        yield f"{dst}.cross_attn.out.bias", v[f"{src}/attention/linear_2/bias"]
    yield "decoder.ln.weight", v["decoder/layer_norm/gamma"]
    yield "decoder.ln.bias", v["decoder/layer_norm/beta"]


def _write_tensor(out: BinaryIO, name: str, data: np.ndarray) -> None:
    keep_f32 = data.ndim < 2 or name in F32_NAMES
    data = np.ascontiguousarray(data, dtype=np.float32 if keep_f32 else np.float16)
    encoded = name.encode()
    out.write(struct.pack("<iii", data.ndim, len(encoded), 0 if keep_f32 else 1))
    for dim in reversed(data.shape):
        out.write(struct.pack("<i", dim))
    out.write(encoded)
    out.write(data.tobytes())


def convert_whisper(model_dir: Path, out_path: Path) -> None:
    """Write whisper.cpp's ggml file from a CTranslate2 Whisper folder (model.bin, vocabulary)."""
    model_bin = model_dir / "model.bin"
    parts = sorted(model_dir.glob("model.bin.part*"))
    if not model_bin.is_file() and parts:
        model_bin = out_path.with_suffix(".joined")
        with model_bin.open("wb") as joined:
            for part in parts:
                joined.write(part.read_bytes())
    v = read_ctranslate2(model_bin)
    vocab_file = model_dir / "vocabulary.txt"
    vocabulary = (
        vocab_file.read_text(encoding="utf-8").splitlines()
        if vocab_file.is_file()
        else json.loads((model_dir / "vocabulary.json").read_text())
    )
    n_enc = len({m.group(1) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k))})
    n_dec = len({m.group(1) for k in v if (m := re.match(r"decoder/layer_(\d+)/", k))})
    n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
    n_audio_ctx, n_audio_state = v["encoder/position_encodings/encodings"].shape
    n_text_ctx = v["decoder/position_encodings/encodings"].shape[0]
    n_mels = v["encoder/conv1/weight"].shape[1]
    hparams = (
        n_vocab,
        n_audio_ctx,
        n_audio_state,
        int(v["encoder/num_heads"]),
        n_enc,
        n_text_ctx,
        n_text_state,
        int(v["decoder/num_heads"]),
        n_dec,
        n_mels,
        1,
    )
    filters = mel_filters(n_mels)
    tokens = vocabulary_bytes(vocabulary)
    with out_path.open("wb") as out:
        out.write(struct.pack("<i", GGML_MAGIC))
        out.write(struct.pack("<11i", *hparams))
        out.write(struct.pack("<ii", *filters.shape))
        out.write(filters.tobytes())
        out.write(struct.pack("<i", len(tokens)))
        for token in tokens:
            out.write(struct.pack("<i", len(token)) + token)
        for name, data in whisper_tensors(v, n_enc, n_dec):
            _write_tensor(out, name, data)
    if model_bin.suffix == ".joined":
        model_bin.unlink()
