"""The models and loaders that plugins registered, by name. A duplicate name is an error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from appliance.capabilities import ChatModel, Embedder
from appliance.capabilities.images import ImageClassifier, ImageDescriber
from appliance.capabilities.moderation import TextModerator
from appliance.capabilities.retrieve import DocumentLoader, Retriever
from appliance.capabilities.transcribe import Transcriber
from appliance.errors import NotFound, PluginError

T = TypeVar("T")
ModelKind = Literal["chat", "embed", "transcribe"]


def canonical_name(name: str) -> str:
    """Ollama clients add ``:latest``; the box's names have no tag unless they carry one."""
    name = name.strip()
    return name[: -len(":latest")] if name.endswith(":latest") else name


@dataclass
class Registered(Generic[T]):
    kind: str
    items: dict[str, T] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    prefer: Callable[[list[str]], str] | None = None
    """Which of several tagged models a bare name means (``smollm2`` for ``smollm2:135m`` and
    ``smollm2:360m``): the Appliance sets it to its hardware choice."""

    def resolve(self, name: str) -> str | None:
        """The registered name ``name`` means: exact, without ``:latest``, or a bare name for
        its tagged models (as ``ollama run smollm2`` works); None when nothing matches."""
        key = canonical_name(name)
        if key in self.items:
            return key
        if ":" in key:
            return None
        tagged = sorted(n for n in self.items if n.split(":", 1)[0] == key)
        if len(tagged) > 1 and self.prefer is not None:
            return self.prefer(tagged)
        return tagged[0] if tagged else None

    def add(self, name: str, item: T, owner: str) -> None:
        name = canonical_name(name)
        if name in self.items:
            raise PluginError(
                f"{self.kind} '{name}' is registered by both '{self.owners[name]}' and "
                f"'{owner}'; disable one of them"
            )
        self.items[name] = item
        self.owners[name] = owner

    def replace(self, name: str, item: T, owner: str) -> None:
        """Swap ``owner``'s own entry of that name (or add it); another plugin's is refused."""
        key = canonical_name(name)
        if key in self.items and self.owners[key] != owner:
            raise PluginError(f"{self.kind} '{key}' belongs to '{self.owners[key]}', not '{owner}'")
        self.items[key] = item
        self.owners[key] = owner

    def remove(self, name: str, owner: str | None = None) -> bool:
        """Remove an entry (only ``owner``'s, when given); return whether one was removed."""
        key = canonical_name(name)
        if key not in self.items or (owner is not None and self.owners[key] != owner):
            return False
        del self.items[key]
        del self.owners[key]
        return True

    def get(self, name: str) -> T:
        key = self.resolve(name)
        if key is None:
            known = ", ".join(sorted(self.items)) or "none"
            raise NotFound(
                f"{self.kind} '{name}' not found; available: {known}",
                param="model",
                code="model_not_found",
            )
        return self.items[key]

    def find(self, name: str) -> T | None:
        key = self.resolve(name)
        return None if key is None else self.items[key]

    def owner(self, name: str) -> str | None:
        return self.owners.get(canonical_name(name))

    def values(self) -> list[T]:
        return list(self.items.values())

    def names(self) -> list[str]:
        return list(self.items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) is not None


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
    image_classifiers: Registered[ImageClassifier] = field(
        default_factory=lambda: Registered("image classifier")
    )
    image_describers: Registered[ImageDescriber] = field(
        default_factory=lambda: Registered("image describer")
    )
    moderators: Registered[TextModerator] = field(
        default_factory=lambda: Registered("text moderator")
    )

    def of_kind(self, kind: ModelKind) -> Registered[Any]:
        """The models of a kind, by the catalog's kind names."""
        if kind == "chat":
            return self.chat
        return self.embedders if kind == "embed" else self.transcribers
