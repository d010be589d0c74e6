"""Validate responses against the OpenAI and Ollama OpenAPI specs in ../shared/specs."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs"


def _rewrite_nullable(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _rewrite_nullable(v) for k, v in node.items()}
        if node.pop("nullable", False) is True:
            return {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_rewrite_nullable(v) for v in node]
    return node


@lru_cache(maxsize=2)
def _components(name: str) -> dict[str, Any]:
    path = SPECS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent; response validation needs the shared specs")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open() as fh:
        spec = yaml.load(fh, Loader=loader)
    return {"components": _rewrite_nullable(spec["components"])}


def validate(spec: str, schema_name: str, instance: Any) -> None:
    """Raise ``jsonschema.ValidationError`` if ``instance`` does not match the named schema."""
    root = {**_components(spec), "$ref": f"#/components/schemas/{schema_name}"}
    jsonschema.Draft202012Validator(root).validate(instance)


def validate_openai(schema_name: str, instance: Any) -> None:
    validate("openai-openapi.yaml", schema_name, instance)


def validate_ollama(schema_name: str, instance: Any) -> None:
    validate("ollama-openapi.yaml", schema_name, instance)
