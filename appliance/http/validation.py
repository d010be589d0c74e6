"""Parse request bodies into pydantic models; a validation error is a 400 naming the field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from appliance.errors import BadRequest

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        detail = first["msg"]
        if first["type"] == "missing":
            detail = "is required"
        raise BadRequest(f"'{param}' {detail}" if param else detail, param=param) from None
