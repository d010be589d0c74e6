"""Capability interfaces that plugins implement and the HTTP layer drives."""

from appliance.capabilities.chat import (
    ChatModel,
    ChatRequest,
    CompletionRequest,
    GenerationChunk,
    ModelInfo,
    Usage,
)
from appliance.capabilities.embed import Embedder, EmbeddingResult

__all__ = [
    "ChatModel",
    "ChatRequest",
    "CompletionRequest",
    "Embedder",
    "EmbeddingResult",
    "GenerationChunk",
    "ModelInfo",
    "Usage",
]
