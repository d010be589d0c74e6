"""Memory and speed estimates (REFERENCE.md §3), and the choice of models that fit together.

    W   = the GGUF file size
    KV  = 2 x layers x n_ctx x kv_heads x head_dim x 2 bytes (f16) x slots
    P   = KV / slots with more than one slot: idle slots' caches parked in host memory
    C   = 4 x n_batch x (n_embd + n_vocab)               compute buffers
    O   = 457 MiB per CUDA device, 150 MiB on CPU         runtime overhead
    tok/s = efficiency x bandwidth / (W + KV read per token)

The chat model is chosen first, against the memory left after the reserve, the embedder and the
smallest Whisper; then the largest Whisper that fits what remains. That order keeps the choice
monotonic: more memory never yields a smaller chat model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.hardware.facts import HardwareFacts
from appliance.hardware.profiles import HardwareProfile
from appliance.models.catalog import Catalog, CatalogModel, Quant

GIB = 1 << 30
MIB = 1 << 20
N_BATCH = 512
# Ollama's default context is 4k below 23 GiB of VRAM; GPUs get 8k when it fits. Batched slots
# share one pass over the weights, so they add throughput on a CPU too (measured here: 4
# sequences decode ~1.7x the tokens/s of one), as llama-server's default -np 4 does.
CPU_CONTEXTS = (4096, 2048)
GPU_CONTEXTS = (8192, 4096, 2048)
CPU_SLOTS = (4, 2, 1)
GPU_SLOTS = (4, 2, 1)
KV_TOKENS_READ = 1024
EMBEDDER_RUNTIME = 64 * MIB
# Resident memory of whisper.cpp models (whisper.cpp README), smallest first.
WHISPER = (
    ("whisper:tiny.en", 273_000_000),
    ("whisper:base", 388_000_000),
    ("whisper:small", 852_000_000),
    ("whisper:medium", 2_100_000_000),
    ("whisper:large-v3", 3_900_000_000),
)


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


@dataclass(frozen=True)
class ChatEstimate:
    model: str
    quant: str
    params: float
    ctx: int
    slots: int
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int
    predicted_tps: float
    parked_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return (
            self.weights_bytes
            + self.kv_bytes
            + self.parked_bytes
            + self.compute_bytes
            + self.overhead_bytes
        )


def kv_bytes(model: CatalogModel, ctx: int, slots: int = 1) -> int:
    return 2 * model.layers * ctx * model.kv_heads * model.head_dim * 2 * slots


def estimate(
    model: CatalogModel,
    quant: Quant,
    profile: HardwareProfile,
    ctx: int,
    slots: int = 1,
    efficiency: float | None = None,
) -> ChatEstimate:
    eta = efficiency if efficiency is not None else profile.efficiency
    compute = 4 * N_BATCH * (model.embedding_length + model.vocab)
    overhead = 457 * MIB if profile.accelerator == "cuda" else 150 * MIB
    read_per_token = quant.size + kv_bytes(model, min(ctx, KV_TOKENS_READ))
    tps = eta * profile.bandwidth_gbps * 1e9 / read_per_token
    return ChatEstimate(
        model=model.id,
        quant=quant.name,
        params=model.params,
        ctx=ctx,
        slots=slots,
        weights_bytes=quant.size,
        kv_bytes=kv_bytes(model, ctx, slots),
        parked_bytes=kv_bytes(model, ctx) if slots > 1 else 0,
        compute_bytes=compute,
        overhead_bytes=overhead,
        predicted_tps=round(tps, 2),
    )


@dataclass(frozen=True)
class PooledMemory:
    """Memory on another box that this box's chat model may use (a llama.cpp RPC worker)."""

    device: str
    """How /api/ps names it, e.g. ``rpc:10.0.0.2:50052``."""
    free_bytes: int
    problem: str = ""
    """Why it cannot be used now (then it is not counted)."""


@dataclass
class Choice:
    chat: ChatEstimate | None
    transcribe_model: str
    transcribe_bytes: int
    embed_model: str
    embed_bytes: int
    usable_bytes: int
    reserve_bytes: int
    reasons: list[str] = field(default_factory=list)
    pooled: tuple[str, ...] = ()
    """Devices of other boxes the chat model is split over (empty: it runs on this box)."""

    @property
    def total_bytes(self) -> int:
        chat = self.chat.total_bytes if self.chat else 0
        return chat + self.transcribe_bytes + self.embed_bytes

    def as_dict(self) -> dict[str, Any]:
        chat = None
        if self.chat is not None:
            chat = {
                **asdict(self.chat),
                "model": self.chat.model,
                "total_bytes": self.chat.total_bytes,
            }
        return {
            "chat": chat,
            "transcribe": {"model": self.transcribe_model, "bytes": self.transcribe_bytes},
            "embed": {"model": self.embed_model, "bytes": self.embed_bytes},
            "total_bytes": self.total_bytes,
            "usable_bytes": self.usable_bytes,
            "reserve_bytes": self.reserve_bytes,
            "reasons": self.reasons,
            "pooled": list(self.pooled),
        }


def _quant_rank(model: CatalogModel, quant: Quant) -> float:
    return quant.size / model.params if model.params else 0.0


def _memory_pool(profile: HardwareProfile, facts: HardwareFacts) -> tuple[int, int]:
    """(memory for everything resident, extra room for the chat model on a discrete GPU)."""
    usable = facts.usable_memory_bytes
    vram = 0
    if profile.accelerator == "cuda" and not profile.unified_memory:
        vram = sum(g.memory_bytes for g in facts.gpus if g.vendor == "nvidia")
        vram = vram or profile.vram_default_bytes
    return usable, vram


def choose(
    profile: HardwareProfile,
    facts: HardwareFacts,
    catalog: Catalog,
    efficiency: float | None = None,
    excluded: dict[str, str] | None = None,
    pooled: tuple[PooledMemory, ...] = (),
) -> Choice:
    excluded = excluded or {}
    usable, vram = _memory_pool(profile, facts)
    embedder = next(iter(catalog.of_kind("embed")), None)
    embed_bytes = (embedder.quant().size + EMBEDDER_RUNTIME) if embedder else 0
    smallest_whisper = WHISPER[0][1]
    free = usable - profile.reserve_bytes - embed_bytes - smallest_whisper
    chat_room = max(free, vram - (457 * MIB if vram else 0))
    local_room = chat_room
    usable_pool = [p for p in pooled if not p.problem and p.free_bytes > 0]
    chat_room += sum(p.free_bytes for p in usable_pool)
    eta = efficiency if efficiency is not None else profile.efficiency
    reasons = [
        f"Profile {profile.id}: {profile.bandwidth_gbps:g} GB/s memory bandwidth, "
        f"efficiency {eta:.2f}, interactive floor {profile.chat_floor_tps:g} tok/s.",
        f"{gib(usable)} usable memory; {gib(profile.reserve_bytes)} reserved for the system; "
        f"the embedder and Whisper stay resident, leaving {gib(max(local_room, 0))} for chat"
        + (f" (the GPU has {gib(vram)})." if vram else "."),
    ]
    reasons += [f"{p.device}: {p.problem}; not counted." for p in pooled if p.problem]
    if usable_pool:
        reasons.append(
            "Pooled with "
            + ", ".join(f"{p.device} ({gib(p.free_bytes)} free)" for p in usable_pool)
            + f": {gib(chat_room)} for chat in all."
        )
    best: ChatEstimate | None = None
    pooled_devices: tuple[str, ...] = ()
    rejected: dict[str, str] = {}
    models = sorted(catalog.of_kind("chat"), key=lambda m: m.params, reverse=True)
    for model in models:
        if model.id in excluded:
            rejected[model.id] = f"{model.id} is excluded: {excluded[model.id]}"
            continue
        for quant in sorted(model.quants, key=lambda q: _quant_rank(model, q), reverse=True):
            contexts = GPU_CONTEXTS if profile.accelerator == "cuda" else CPU_CONTEXTS
            for ctx in [c for c in contexts if c <= (model.context or c)] or [model.context]:
                fit = estimate(model, quant, profile, ctx, 1, eta)
                if fit.predicted_tps < profile.chat_floor_tps:
                    rejected[model.id] = (
                        f"{model.id} {quant.name} would decode at ~{fit.predicted_tps:.1f} tok/s, "
                        f"below this profile's floor of {profile.chat_floor_tps:g} tok/s."
                    )
                    break
                if fit.total_bytes > chat_room:
                    rejected[model.id] = (
                        f"{model.id} {quant.name} would need {gib(fit.total_bytes)}; "
                        f"{gib(max(chat_room, 0))} is available after the reserve, the embedder "
                        "and Whisper."
                    )
                    continue
                slot_options = GPU_SLOTS if profile.accelerator == "cuda" else CPU_SLOTS
                slots = next(
                    s
                    for s in slot_options
                    if estimate(model, quant, profile, ctx, s, eta).total_bytes <= chat_room
                )
                best = estimate(model, quant, profile, ctx, slots, eta)
                break
            if best:
                break
        if best:
            break
    for model in models:
        if best and model.params <= best.params:
            break
        if model.id in rejected:
            reasons.append(rejected[model.id])
    if best is None:
        reasons.append("No chat model fits this box's memory and speed floor.")
        chat_bytes = 0
    else:
        chat_bytes = best.total_bytes
        if best.total_bytes > local_room:
            reasons.append(
                f"{best.model} {best.quant} needs {gib(best.total_bytes)}, more than this box "
                f"alone has ({gib(max(local_room, 0))}); its layers are split over this box and "
                + ", ".join(p.device for p in usable_pool)
                + "."
            )
            pooled_devices = tuple(p.device for p in usable_pool)
        reasons.append(
            f"Chose {best.model} {best.quant} with a {best.ctx}-token context and {best.slots} "
            f"parallel slot{'s' if best.slots > 1 else ''}: {gib(best.total_bytes)}, "
            f"~{best.predicted_tps:.1f} tok/s predicted."
        )
    whisper_room = (
        usable
        - profile.reserve_bytes
        - embed_bytes
        - (0 if vram and best and best.total_bytes <= vram else min(chat_bytes, local_room))
    )
    cap = (
        1
        if profile.accelerator == "cpu" and profile.bandwidth_gbps < 30
        else (2 if profile.accelerator == "cpu" else len(WHISPER) - 1)
    )
    whisper_id, whisper_bytes = WHISPER[0]
    for wid, size in WHISPER[: cap + 1]:
        if size <= whisper_room:
            whisper_id, whisper_bytes = wid, size
    reasons.append(
        f"Transcription: {whisper_id} ({gib(whisper_bytes)}), the largest Whisper that fits "
        f"beside chat and suits a {profile.accelerator.upper()} box of this speed."
    )
    return Choice(
        chat=best,
        transcribe_model=whisper_id,
        transcribe_bytes=whisper_bytes,
        embed_model=embedder.id if embedder else "",
        embed_bytes=embed_bytes,
        usable_bytes=usable,
        reserve_bytes=profile.reserve_bytes,
        reasons=reasons,
        pooled=pooled_devices,
    )
