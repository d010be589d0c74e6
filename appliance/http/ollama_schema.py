"""Request bodies of the Ollama API and how their options map onto the box's sampler."""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from appliance.capabilities.chat import SamplingOptions
from appliance.errors import BadRequest
from appliance.http.validation import Body

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h)?\s*$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
FOREVER_S = 10 * 365 * 24 * 3600.0


def keep_alive_seconds(value: Any) -> float | None:
    """Ollama's keep_alive: seconds as a number, or "5m"/"1h"/"0"; negative means forever."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequest(
            "keep_alive must be a duration like '5m' or a number of seconds", param="keep_alive"
        )
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise BadRequest(
                f"keep_alive {value!r} is not a duration like '5m', '1h' or '0'", param="keep_alive"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if math.isnan(seconds):
        raise BadRequest("keep_alive must be a number of seconds, not NaN", param="keep_alive")
    # Negative (and anything beyond ten years, infinity included) keeps the model loaded.
    return FOREVER_S if seconds < 0 or seconds > FOREVER_S else seconds


class Options(Body):
    seed: int | None = None
    temperature: float = Field(default=0.8, ge=0)
    top_k: int = Field(default=40, ge=0)
    top_p: float = Field(default=0.9, ge=0, le=1)
    min_p: float = Field(default=0.0, ge=0, le=1)
    repeat_penalty: float = Field(default=1.1, ge=0)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    num_predict: int | None = None
    num_ctx: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None

    def sampling(self, logprobs: bool = False, top_logprobs: int = 0) -> SamplingOptions:
        max_tokens = self.num_predict if self.num_predict and self.num_predict > 0 else None
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingOptions(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            seed=self.seed,
            stop=stop,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            n_ctx=self.num_ctx,
        )


def response_format(value: Any) -> dict[str, Any] | None:
    """``format``: "json" or a JSON schema object."""
    if value in (None, ""):
        return None
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": value}}
    raise BadRequest('format must be "json" or a JSON schema object', param="format")


class OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(pattern="^(system|user|assistant|tool)$")
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _Common(Body):
    model: str = ""
    name: str = ""
    stream: bool = True
    keep_alive: str | float | int | None = None
    options: Options = Field(default_factory=Options)
    format: Any = None

    @model_validator(mode="after")
    def _model_or_name(self) -> _Common:
        if not self.model:
            self.model = self.name
        if not self.model:
            raise ValueError("'model' is required")
        return self


class ChatBody(_Common):
    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)


class GenerateBody(_Common):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    raw: bool = False
    images: list[str] | None = None
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)


class EmbedBody(_Common):
    input: str | list[str] = ""
    truncate: bool = True
    dimensions: int | None = Field(default=None, ge=1)


class LegacyEmbeddingsBody(_Common):
    prompt: str = ""


class ShowBody(_Common):
    verbose: bool = False
