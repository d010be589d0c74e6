"""Capability interfaces that plugins implement and the HTTP layer drives."""

from appliance.capabilities.chat import (
    AsyncChatModel,
    BatchedChatModel,
    ChatModel,
    ChatRequest,
    CompletionRequest,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
    SamplingOptions,
    Usage,
)
from appliance.capabilities.embed import Embedder, EmbeddingResult

__all__ = [
    "AsyncChatModel",
    "BatchedChatModel",
    "ChatModel",
    "ChatRequest",
    "CompletionRequest",
    "Embedder",
    "EmbeddingResult",
    "GenerationChunk",
    "GenerationRequest",
    "ModelInfo",
    "SamplingOptions",
    "Usage",
]
