"""The appliance: private, offline AI for a LAN.

Everything a plugin needs is importable from here, and plugins import nothing else of the core
(a test checks the bundled ones), the way simonw/llm's plugins import only ``llm``.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("appliance")

from appliance.auth import Actor  # noqa: E402
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
from appliance.capabilities.images import (  # noqa: E402
    ImageClassifier,
    ImageDescriber,
    ImageInput,
    ImageScores,
)
from appliance.capabilities.moderation import (  # noqa: E402
    ModerationResult,
    TextModerator,
)
from appliance.capabilities.retrieve import (  # noqa: E402
    ContextChunk,
    DocumentLoader,
    LoadedSection,
    Retriever,
)
from appliance.capabilities.transcribe import (  # noqa: E402
    Segment,
    Transcriber,
    Transcription,
    TranscriptionRequest,
)
from appliance.cli.common import opened  # noqa: E402
from appliance.core import Appliance, Event, StateKey  # noqa: E402
from appliance.errors import (  # noqa: E402
    ApplianceError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
)
from appliance.hardware.fit import PooledMemory  # noqa: E402
from appliance.hardware.profiles import HardwareProfile  # noqa: E402
from appliance.history.conversations import fts_quote, message_text  # noqa: E402
from appliance.history.migrations import Migration, migration  # noqa: E402
from appliance.http.middleware import read_json, require, track_change  # noqa: E402
from appliance.http.multipart import Form, UploadedFile, read_form  # noqa: E402
from appliance.http.validation import parse_body  # noqa: E402
from appliance.keys import actor_of, appliance_of  # noqa: E402
from appliance.models.catalog import CatalogModel, Quant  # noqa: E402
from appliance.models.store import StoredModel, sha256_file  # noqa: E402
from appliance.quotas import TokenLimits  # noqa: E402

__all__ = [
    "Actor",
    "Appliance",
    "ApplianceError",
    "AsyncChatModel",
    "BadRequest",
    "BatchedChatModel",
    "CatalogModel",
    "ChatModel",
    "ChatRequest",
    "CompletionRequest",
    "Conflict",
    "ContextChunk",
    "DocumentLoader",
    "Embedder",
    "EmbeddingResult",
    "Event",
    "Forbidden",
    "Form",
    "GenerationChunk",
    "GenerationRequest",
    "HardwareProfile",
    "ImageClassifier",
    "ImageDescriber",
    "ImageInput",
    "ImageScores",
    "LoadedSection",
    "Migration",
    "ModelInfo",
    "ModerationResult",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PooledMemory",
    "Quant",
    "Retriever",
    "SamplingOptions",
    "Segment",
    "StateKey",
    "StoredModel",
    "TextModerator",
    "TokenLimits",
    "Transcriber",
    "Transcription",
    "TranscriptionRequest",
    "Unauthorized",
    "UploadedFile",
    "Usage",
    "__version__",
    "actor_of",
    "appliance_of",
    "fts_quote",
    "hookimpl",
    "message_text",
    "migration",
    "opened",
    "parse_body",
    "read_form",
    "read_json",
    "require",
    "sha256_file",
    "track_change",
]
