"""The models and loaders that plugins registered, by name. A duplicate name is an error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from appliance.capabilities import ChatModel, Embedder
from appliance.capabilities.retrieve import DocumentLoader, Retriever
from appliance.capabilities.transcribe import Transcriber
from appliance.errors import NotFound, PluginError

T = TypeVar("T")


def canonical_name(name: str) -> str:
    """Ollama clients add ``:latest``; the box's names have no tag unless they carry one."""
    name = name.strip()
    return name[: -len(":latest")] if name.endswith(":latest") else name


@dataclass
class Registered(Generic[T]):
    kind: str
    items: dict[str, T] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, item: T, owner: str) -> None:
        name = canonical_name(name)
        if name in self.items:
            raise PluginError(
                f"{self.kind} '{name}' is registered by both '{self.owners[name]}' and "
                f"'{owner}'; disable one of them"
            )
        self.items[name] = item
        self.owners[name] = owner

    def get(self, name: str) -> T:
        key = canonical_name(name)
        if key not in self.items:
            known = ", ".join(sorted(self.items)) or "none"
            raise NotFound(
                f"{self.kind} '{name}' not found; available: {known}",
                param="model",
                code="model_not_found",
            )
        return self.items[key]

    def names(self) -> list[str]:
        return list(self.items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical_name(name) in self.items


@dataclass
class Registry:
    chat: Registered[ChatModel] = field(default_factory=lambda: Registered("chat model"))
    embedders: Registered[Embedder] = field(default_factory=lambda: Registered("embedding model"))
    transcribers: Registered[Transcriber] = field(
        default_factory=lambda: Registered("transcription model")
    )
    loaders: Registered[DocumentLoader] = field(
        default_factory=lambda: Registered("document loader")
    )
    retrievers: Registered[Retriever] = field(default_factory=lambda: Registered("retriever"))
