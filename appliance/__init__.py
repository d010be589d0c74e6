"""The appliance: private, offline AI for a LAN. Plugins import what they need from here."""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("appliance")

from appliance.capabilities import (  # noqa: E402
    ChatModel,
    ChatRequest,
    CompletionRequest,
    Embedder,
    EmbeddingResult,
    GenerationChunk,
    ModelInfo,
    Usage,
)
from appliance.errors import (  # noqa: E402
    ApplianceError,
    BadRequest,
    Forbidden,
    NotFound,
    Overloaded,
)
from appliance.history.migrations import Migration, migration  # noqa: E402

__all__ = [
    "ApplianceError",
    "BadRequest",
    "ChatModel",
    "ChatRequest",
    "CompletionRequest",
    "Embedder",
    "EmbeddingResult",
    "Forbidden",
    "GenerationChunk",
    "Migration",
    "ModelInfo",
    "NotFound",
    "Overloaded",
    "Usage",
    "__version__",
    "hookimpl",
    "migration",
]
