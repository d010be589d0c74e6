"""``POST /v1/moderations`` in OpenAI's shape, answered by the box's text moderator (the
moderation plugin's policy machinery over the box's chat model). Text only: images go through
``/appliance/moderation/checks``."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from pydantic import Field

from appliance.capabilities.moderation import CATEGORIES
from appliance.errors import BadRequest, NotFound
from appliance.http.middleware import read_json, require
from appliance.http.validation import Body, parse_body
from appliance.keys import appliance_of

routes = web.RouteTableDef()
MAX_INPUTS = 32
MAX_CHARS = 32_000


class ModerationBody(Body):
    input: str | list[str] | list[dict[str, Any]]
    model: str | None = Field(default=None, max_length=200)

    def texts(self) -> list[str]:
        if isinstance(self.input, str):
            return [self.input]
        texts = []
        for item in self.input:
            if isinstance(item, str):
                texts.append(item)
            elif item.get("type") == "text" and isinstance(item.get("text"), str):
                texts.append(item["text"])
            elif item.get("type") == "image_url":
                raise BadRequest(
                    "/v1/moderations checks text on this box; send images to "
                    "/appliance/moderation/checks",
                    param="input",
                )
            else:
                raise BadRequest("each input item is text or {'type': 'text', 'text': ...}")
        return texts


@routes.post("/v1/moderations")
async def moderations(request: web.Request) -> web.Response:
    actor = require(request, "models.use")
    appliance = appliance_of(request)
    body = parse_body(ModerationBody, await read_json(request))
    texts = body.texts()
    if not texts or len(texts) > MAX_INPUTS:
        raise BadRequest(f"send 1 to {MAX_INPUTS} inputs", param="input")
    if any(len(t) > MAX_CHARS for t in texts):
        raise BadRequest(f"each input is at most {MAX_CHARS} characters", param="input")
    moderators = appliance.registry.moderators.values()
    if not moderators:
        raise NotFound(
            "this box has no text moderation (the appliance-moderation plugin provides it)",
            code="model_not_found",
        )
    moderator = moderators[0]
    results = await moderator.moderate(texts, caller=actor.id if actor else "")
    return web.json_response(
        {
            "id": f"modr-{uuid.uuid4().hex}",
            "model": moderator.model,
            "results": [
                {
                    "flagged": result.flagged,
                    "categories": {c: bool(result.categories.get(c)) for c in CATEGORIES},
                    "category_scores": {
                        c: float(result.category_scores.get(c, 0.0)) for c in CATEGORIES
                    },
                    "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
                }
                for result in results
            ],
        }
    )
