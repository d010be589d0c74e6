"""Every hook of the ``appliance`` pluggy project. Each is documented in docs/plugin-hooks.md.

Registration hooks are synchronous and run once at start-up; async work lives in the objects they
register. A plugin implements any subset with ``@appliance.hookimpl``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from aiohttp import web

    from appliance.auth import Actor
    from appliance.capabilities import ChatModel, Embedder
    from appliance.capabilities.images import ImageClassifier, ImageDescriber
    from appliance.capabilities.retrieve import ContextChunk, DocumentLoader
    from appliance.capabilities.transcribe import Transcriber
    from appliance.core import Appliance, Event
    from appliance.hardware.fit import PooledMemory
    from appliance.hardware.profiles import HardwareProfile
    from appliance.history.migrations import Migration
    from appliance.models.sources import ModelSource

hookspec = pluggy.HookspecMarker("appliance")


@hookspec
def register_chat_models(
    register: Callable[[ChatModel], None], profile: HardwareProfile, appliance: Appliance
) -> None:
    """Register chat models by calling ``register(model)`` for each.

    ``appliance`` gives the settings and the model store (``appliance.store``).
    """


@hookspec
def register_embedders(
    register: Callable[[Embedder], None], profile: HardwareProfile, appliance: Appliance
) -> None:
    """Register embedding models by calling ``register(embedder)`` for each."""


@hookspec
def register_transcribers(
    register: Callable[[Transcriber], None], profile: HardwareProfile, appliance: Appliance
) -> None:
    """Register speech-to-text models by calling ``register(transcriber)`` for each."""


@hookspec
def register_image_classifiers(
    register: Callable[[ImageClassifier], None], profile: HardwareProfile, appliance: Appliance
) -> None:
    """Register image classifiers (scores per label) by calling ``register(classifier)``."""


@hookspec
def register_image_describers(
    register: Callable[[ImageDescriber], None], profile: HardwareProfile, appliance: Appliance
) -> None:
    """Register image describers (vision-language models) by calling ``register(describer)``."""


@hookspec
def register_document_loaders(register: Callable[[DocumentLoader], None]) -> None:
    """Register loaders that turn files into text sections for RAG."""


@hookspec
def register_routes(appliance: Appliance) -> list[web.RouteDef] | None:
    """Return aiohttp route definitions; they are mounted under ``/plugins/<plugin name>/``."""


@hookspec
def register_migrations(register: Callable[[str, Migration], None]) -> None:
    """Register database migrations with ``register(owner, migration)``, in order."""


@hookspec
def register_model_sources(appliance: Appliance) -> dict[str, ModelSource] | None:
    """Return model sources by scheme: ``{"fleet": fetch}`` makes ``fleet:REST`` a source of
    ``appliance models fetch --source`` (and ``--from-peer NAME`` is ``fleet:NAME``). ``fetch(rest,
    model, quant, workdir)`` brings the file into ``workdir`` and returns its path; the store then
    checks it against the catalog's sha256 like every other source."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``appliance`` command line."""


@hookspec
def lifespan(appliance: Appliance) -> AbstractAsyncContextManager[None] | None:
    """Return an async context manager entered at start-up and exited at shutdown."""


@hookspec
def prompt_context(appliance: Appliance, request: dict[str, Any]) -> list[ContextChunk] | None:
    """Return context chunks to add to a chat request (an awaitable is awaited)."""


@hookspec
def mdns_properties(appliance: Appliance) -> dict[str, str] | None:
    """Return extra TXT entries for the box's mDNS record (each entry at most 255 bytes)."""


@hookspec(firstresult=True)
def select_hardware_profile(facts: Any, profiles: list[HardwareProfile]) -> HardwareProfile | None:
    """Choose the profile for these hardware facts. The first non-None answer wins."""


@hookspec
def pooled_memory(appliance: Appliance) -> list[PooledMemory] | None:
    """Return memory of other boxes this box's chat model can use (e.g. llama.cpp RPC workers).
    The hardware choice counts it, so a model too big for this box alone can be chosen."""


@hookspec(firstresult=True)
def actor_from_request(appliance: Appliance, request: web.Request) -> Actor | None:
    """Identify who sent a request. The first non-None answer wins (core default: tokens)."""


@hookspec
def permission_allowed(
    appliance: Appliance, actor: Actor | None, action: str, resource: str | None
) -> bool | None:
    """Vote on an action: any False denies, else any True allows, else it is denied."""


@hookspec
def track_event(appliance: Appliance, event: Event) -> None:
    """Observe an event (a request, a model load, a token change); history and audit listen here."""
