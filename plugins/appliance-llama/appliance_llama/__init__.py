"""Chat, completions, embeddings and vision-language models on llama.cpp for every catalog model
in the store; a chat model's layers split over llama.cpp RPC workers (`rpc_workers`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from appliance import (
    Appliance,
    CatalogModel,
    ChatModel,
    Embedder,
    HardwareProfile,
    ImageDescriber,
    ModelInfo,
    PooledMemory,
    StateKey,
    StoredModel,
    hookimpl,
)
from appliance_llama.chat import LlamaChatModel
from appliance_llama.embed import LlamaEmbedder
from appliance_llama.rpc import RpcPool
from appliance_llama.vision import LlamaVisionModel

RPC_POOL: StateKey[RpcPool] = StateKey("llama-rpc-pool")
VISION: StateKey[list[LlamaVisionModel]] = StateKey("llama-vision-models")
VISION_CTX = 4096
log = logging.getLogger(__name__)

# Like Ollama's OLLAMA_NUM_PARALLEL and llama-server's -np: sequences decoded together when the
# hardware choice did not pick this model (the `parallel` setting overrides both).
DEFAULT_SLOTS = 4


def _info(stored: StoredModel, context: int) -> ModelInfo:
    model: CatalogModel = stored.model
    return ModelInfo(
        name=model.id,
        family=model.family,
        parameters=model.parameters,
        quantization=stored.quant.name,
        context_length=context,
        size_bytes=stored.quant.size or stored.path.stat().st_size,
        digest=stored.sha256,
        owned_by="appliance-llama",
        capabilities=("chat", "completion") if model.kind == "chat" else ("embedding",),
        details={
            "dimensions": model.embedding_length,
            "license": model.license,
            "layers": model.layers,
            "trained_context": model.context,
            "file": str(stored.path),
        },
    )


def _loader(appliance: Appliance, stored: StoredModel) -> Callable[[], Path]:
    return lambda: appliance.store.verified_path(stored.model, stored.quant)


def _chosen(appliance: Appliance, kind: str) -> list[StoredModel]:
    """One stored file per model id: the catalog's default quantization when present."""
    by_id: dict[str, StoredModel] = {}
    for stored in appliance.store.installed():
        if stored.model.kind != kind:
            continue
        current = by_id.get(stored.model.id)
        if current is None or stored.quant.name == stored.model.default_quant:
            by_id[stored.model.id] = stored
    return list(by_id.values())


def _rpc_pool(appliance: Appliance) -> RpcPool | None:
    workers = appliance.settings.rpc_workers
    return appliance.state(RPC_POOL, lambda: RpcPool(workers)) if workers else None


@hookimpl
def pooled_memory(appliance: Appliance) -> list[PooledMemory] | None:
    pool = _rpc_pool(appliance)
    return pool.pooled() if pool else None


@hookimpl
def register_chat_models(
    register: Callable[[ChatModel], None], profile: HardwareProfile, appliance: Appliance
) -> None:
    settings = appliance.settings
    choice = appliance.choice.chat if appliance.choice else None
    pooled = bool(appliance.choice and appliance.choice.pooled)
    pool = _rpc_pool(appliance)
    for stored in _chosen(appliance, "chat"):
        context = min(settings.chat_ctx, stored.model.context or settings.chat_ctx)
        slots = DEFAULT_SLOTS
        if choice is not None and choice.model == stored.model.id:
            context = min(context, choice.ctx)  # what the hardware choice found room for
            slots = choice.slots
        register(
            LlamaChatModel(
                _info(stored, context),
                _loader(appliance, stored),
                context,
                settings.n_threads,
                slots=settings.parallel or slots,
                rpc=pool,
                needs_pool=pooled and choice is not None and choice.model == stored.model.id,
            )
        )
    for model in _vision_models(appliance):
        register(model)


def _vision_models(appliance: Appliance) -> list[LlamaVisionModel]:
    """One object per vision-language model in the store whose projector is there too: it is
    both a chat model that reads images and an image describer."""

    def make() -> list[LlamaVisionModel]:
        projectors = {s.model.id: s for s in _chosen(appliance, "projector")}
        found = []
        for stored in _chosen(appliance, "vision"):
            projector = projectors.get(str(stored.model.extra.get("projector", "")))
            if projector is None:
                log.warning("%s is in the store without its projector; not served", stored.model.id)
                continue
            info = _info(stored, min(VISION_CTX, stored.model.context or VISION_CTX))
            info = replace(info, capabilities=("chat", "vision"))
            paths = _pair_loader(appliance, stored, projector)
            found.append(
                LlamaVisionModel(info, paths, info.context_length, appliance.settings.n_threads)
            )
        return found

    return appliance.state(VISION, make)


def _pair_loader(
    appliance: Appliance, model: StoredModel, projector: StoredModel
) -> Callable[[], tuple[Path, Path]]:
    store = appliance.store
    return lambda: (
        store.verified_path(model.model, model.quant),
        store.verified_path(projector.model, projector.quant),
    )


@hookimpl
def register_image_describers(
    register: Callable[[ImageDescriber], None], profile: HardwareProfile, appliance: Appliance
) -> None:
    for model in _vision_models(appliance):
        register(model)


@hookimpl
def register_embedders(
    register: Callable[[Embedder], None], profile: HardwareProfile, appliance: Appliance
) -> None:
    for stored in _chosen(appliance, "embed"):
        register(
            LlamaEmbedder(
                _info(stored, stored.model.context or 512),
                _loader(appliance, stored),
                appliance.settings.n_threads,
            )
        )


@hookimpl
def register_commands(cli: Any) -> None:
    import click

    @cli.command("rpc-worker")
    @click.option("--host", required=True, help="Address to listen on (this box's LAN address).")
    @click.option("--port", default=50052, show_default=True, type=click.IntRange(1, 65535))
    @click.option(
        "--allow",
        "allowed",
        multiple=True,
        required=True,
        help="Addresses of the head boxes that may use this box (comma-separated or repeated).",
    )
    @click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads.")
    def rpc_worker(host: str, port: int, allowed: tuple[str, ...], threads: int | None) -> None:
        """Lend this box's memory and compute to a head box (llama.cpp RPC)."""
        import logging
        import os

        from appliance_llama.rpc import RpcUnavailable
        from appliance_llama.rpc_worker import run_worker

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        try:
            run_worker(host, port, allowed, threads or max(1, min(4, os.cpu_count() or 1)))
        except (RpcUnavailable, ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
