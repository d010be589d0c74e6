"""Context from ``prompt_context`` plugins (RAG), put in front of a chat as a system message."""

from __future__ import annotations

from typing import Any

from appliance.core import Appliance

CONTEXT_HEADER = (
    "Answer using the numbered sources below when they are relevant, and cite them as [1], [2]. "
    "If they do not contain the answer, say so.\n\n"
)


async def add_context(
    appliance: Appliance, raw_request: dict[str, Any], messages: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the messages with a context message added, and the citations it refers to."""
    chunks = await appliance.prompt_context(raw_request)
    if not chunks:
        return messages, []
    lines = []
    citations = []
    for number, chunk in enumerate(chunks, start=1):
        lines.append(f"[{number}] ({chunk.source})\n{chunk.text}")
        citations.append(
            {
                "index": number,
                "id": chunk.id,
                "source": chunk.source,
                "score": chunk.score,
                "location": chunk.location,
            }
        )
    context = {"role": "system", "content": CONTEXT_HEADER + "\n\n".join(lines)}
    first_other = next((i for i, m in enumerate(messages) if m.get("role") != "system"), 0)
    return [*messages[:first_other], context, *messages[first_other:]], citations
