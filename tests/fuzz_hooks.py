"""schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by tests/test_fuzz.py): half the generated
bodies name a model the box serves, so fuzzing reaches the generation path, not only the 404."""

from __future__ import annotations

import zlib
from typing import Any

import schemathesis

CHAT, EMBED = "echo", "echo-embed"


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    if isinstance(body, dict) and "model" in body and zlib.crc32(repr(body).encode()) % 2 == 0:
        path = ctx.operation.path
        body["model"] = EMBED if "embed" in path else CHAT
    return body
