"""The appliance: private, offline AI for a LAN. Plugins import what they need from here."""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("appliance")

from appliance.capabilities import (  # noqa: E402
    AsyncChatModel,
    BatchedChatModel,
    ChatModel,
    ChatRequest,
    CompletionRequest,
    Embedder,
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
    SamplingOptions,
    Usage,
)
from appliance.errors import (  # noqa: E402
    ApplianceError,
    BadRequest,
    Forbidden,
    NotFound,
    Overloaded,
)
from appliance.history.conversations import message_text  # noqa: E402
from appliance.history.migrations import Migration, migration  # noqa: E402
from appliance.http.multipart import Form, UploadedFile, read_form  # noqa: E402

__all__ = [
    "ApplianceError",
    "AsyncChatModel",
    "BadRequest",
    "BatchedChatModel",
    "ChatModel",
    "ChatRequest",
    "CompletionRequest",
    "Embedder",
    "EmbeddingResult",
    "Forbidden",
    "Form",
    "GenerationChunk",
    "GenerationRequest",
    "Migration",
    "ModelInfo",
    "NotFound",
    "Overloaded",
    "SamplingOptions",
    "UploadedFile",
    "Usage",
    "__version__",
    "hookimpl",
    "message_text",
    "migration",
    "read_form",
]
