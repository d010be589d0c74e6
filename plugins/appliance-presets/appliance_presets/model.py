"""A preset: a base model with a system prompt and default sampling parameters."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

from appliance import (
    ChatModel,
    ChatRequest,
    CompletionRequest,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
    SamplingOptions,
)

PARAMETERS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "seed": "seed",
    "num_predict": "max_tokens",
    "stop": "stop",
}
DEFAULTS = SamplingOptions()


def apply_parameters(sampling: SamplingOptions, parameters: dict[str, Any]) -> SamplingOptions:
    """The preset's parameters, except where the request chose a value of its own."""
    changes: dict[str, Any] = {}
    for key, value in parameters.items():
        field = PARAMETERS[key]
        if getattr(sampling, field) == getattr(DEFAULTS, field):
            changes[field] = tuple(value) if field == "stop" else value
    return dataclasses.replace(sampling, **changes)


class PresetModel(ChatModel):
    def __init__(self, name: str, base: ChatModel, system: str, parameters: dict[str, Any]):
        self.base = base
        self.system = system
        self.parameters = parameters
        self.info = dataclasses.replace(
            base.info,
            name=name,
            owned_by="presets",
            details={
                **base.info.details,
                "base": base.name,
                "system": system,
                "parameters": parameters,
            },
        )

    @property
    def backend(self) -> ChatModel:
        return self.base.backend

    @property
    def loaded(self) -> bool:
        return self.base.loaded

    def _messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.system or any(m.get("role") == "system" for m in messages):
            return messages
        return [{"role": "system", "content": self.system}, *messages]

    def adapt(self, request: GenerationRequest) -> GenerationRequest:
        """The request with this preset's system prompt and options."""
        sampling = apply_parameters(request.sampling, self.parameters)
        if isinstance(request, ChatRequest):
            messages = self._messages(request.messages)
            return dataclasses.replace(request, messages=messages, sampling=sampling)
        return dataclasses.replace(request, sampling=sampling)

    def route(self, request: GenerationRequest) -> tuple[ChatModel, GenerationRequest]:
        """Runs on the base model's slots (and its worker), with the preset's prompt/options."""
        return self.base.route(self.adapt(request))

    def chat(self, request: ChatRequest, cancel: threading.Event) -> Iterator[GenerationChunk]:
        return self.base.chat(self.adapt(request), cancel)  # type: ignore[arg-type]

    def complete(
        self, request: CompletionRequest, cancel: threading.Event
    ) -> Iterator[GenerationChunk]:
        return self.base.complete(self.adapt(request), cancel)  # type: ignore[arg-type]


def preset_info(model: PresetModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "base": model.base.name,
        "system": model.system,
        "parameters": model.parameters,
    }


__all__ = ["PARAMETERS", "ModelInfo", "PresetModel", "apply_parameters", "preset_info"]
