"""Parse request bodies into pydantic models; a validation error is a 400 naming the field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from appliance.errors import BadRequest

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """A request body where ``null`` for an optional field means "not set", as both APIs'
    clients send it (LangChain and LlamaIndex send ``options: {"temperature": null, ...}``; the
    OpenAI spec marks ``temperature``, ``top_p``, ``n``, ``logprobs``... nullable)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


def parse_body(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        detail = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            detail = "is required"
        raise BadRequest(f"'{param}' {detail}" if param else detail, param=param) from None
