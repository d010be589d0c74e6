"""Every hook and every one of its arguments has documentation in docs/plugin-hooks.md."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from appliance import hookspecs

DOC = Path(__file__).parent.parent / "docs" / "plugin-hooks.md"
HOOKS = [
    (name, fn)
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(fn, "appliance_spec")
]


def sections() -> dict[str, str]:
    text = DOC.read_text()
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {part.split("\n", 1)[0].split("(")[0].strip("` "): part for part in parts}


def test_there_are_hooks() -> None:
    assert len(HOOKS) >= 14


@pytest.mark.parametrize(("name", "fn"), HOOKS, ids=[n for n, _ in HOOKS])
def test_hook_is_documented(name: str, fn: object) -> None:
    docs = sections()
    assert name in docs, f"docs/plugin-hooks.md has no '## {name}' section"
    for arg in inspect.signature(fn).parameters:  # type: ignore[arg-type]
        assert f"`{arg}`" in docs[name], f"argument `{arg}` of {name} is not documented"
