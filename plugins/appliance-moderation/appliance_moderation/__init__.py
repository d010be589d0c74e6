"""Images checked against the office's own policy, on the box: a classifier scores the image, a
describer (a vision-language model, when one is in the store) puts it into words, the box's chat
model answers IT's policy questions about it, and thresholds turn all of that into pass, flag or
review. What is uncertain waits for a person; every decision keeps its evidence."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from appliance import (
    Actor,
    Appliance,
    ApplianceError,
    BadRequest,
    Forbidden,
    HardwareProfile,
    ImageClassifier,
    Migration,
    ModelInfo,
    StateKey,
    appliance_of,
    hookimpl,
    parse_body,
    read_form,
    read_json,
    require,
    track_change,
)
from appliance_moderation.checks import Checks, create_tables
from appliance_moderation.classifier import OpenNsfwClassifier
from appliance_moderation.images import MAX_FILE_BYTES, decoded, folder_images, read_image
from appliance_moderation.policy import parse_policy, parse_policy_toml
from appliance_moderation.text import PolicyModerator

NAME = "moderation"
ROUTE_PREFIX = "/appliance/moderation"
CHECKS: StateKey[Checks] = StateKey("moderation.checks")
MAX_UPLOADS = 16
MAX_BATCH = 10_000
USER_ACTIONS = frozenset({"moderation.check"})
routes = web.RouteTableDef()


def checks_of(appliance: Appliance) -> Checks:
    return appliance.state(CHECKS, lambda: Checks(appliance))


@hookimpl
def register_migrations(register: Callable[[str, Migration], None]) -> None:
    register(NAME, create_tables)


@hookimpl
def register_image_classifiers(
    register: Callable[[ImageClassifier], None], profile: HardwareProfile, appliance: Appliance
) -> None:
    for stored in appliance.store.installed():
        if stored.model.kind != "classify":
            continue
        model, quant = stored.model, stored.quant
        info = ModelInfo(
            name=model.id,
            family=model.family,
            parameters=model.parameters,
            quantization=quant.name,
            context_length=0,
            size_bytes=quant.size,
            digest=stored.sha256,
            owned_by="appliance-moderation",
            capabilities=("image-classification",),
            details={"license": model.license, "labels": ["nsfw", "sfw"]},
        )
        path = lambda m=model, q=quant: appliance.store.verified_path(m, q)  # noqa: E731
        register(OpenNsfwClassifier(info, path, min(2, appliance.settings.n_threads)))


@hookimpl
def permission_allowed(
    appliance: Appliance, actor: Actor | None, action: str, resource: str | None
) -> bool | None:
    if actor is not None and actor.role == "user" and action in USER_ACTIONS:
        return True
    return None


@asynccontextmanager
async def _running(appliance: Appliance) -> AsyncIterator[None]:
    checks = checks_of(appliance)
    appliance.registry.moderators.add(NAME, PolicyModerator(checks), NAME)
    checks.start()
    try:
        yield
    finally:
        await checks.stop()
        appliance.registry.moderators.remove(NAME, owner=NAME)
        appliance.drop_state(CHECKS)


@hookimpl
def lifespan(appliance: Appliance) -> Any:
    return _running(appliance)


def _confined(appliance: Appliance, path: Path) -> Path:
    """A folder to check must lie under ``rag_roots`` (as RAG collections do), never the home."""
    if not path.is_absolute() or ".." in path.parts:
        raise BadRequest(f"{path}: give an absolute path without '..'", param="path")
    real = path.resolve()
    home = appliance.settings.home.resolve()
    if real == home or real.is_relative_to(home) or home.is_relative_to(real):
        raise Forbidden(f"{path}: the box's own files cannot be checked", param="path")
    roots = [r.resolve() for r in appliance.settings.rag_roots]
    if not any(real == r or real.is_relative_to(r) for r in roots):
        raise Forbidden(
            f"{path} resolves to {real}, outside the folders IT allows (rag_roots)", param="path"
        )
    if not real.is_dir():
        raise BadRequest(f"{path} is not a folder (is the share mounted?)", param="path")
    return real


class FolderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path
    policy: str | None = Field(default=None, max_length=64)


@routes.post("/checks")
async def create_checks(request: web.Request) -> web.Response:
    """Images uploaded (multipart, checked now) or a folder (JSON ``path``: a batch, 202)."""
    actor = require(request, "moderation.check")
    appliance = appliance_of(request)
    checks = checks_of(appliance)
    if request.content_type.startswith("multipart/"):
        form = await read_form(request, MAX_FILE_BYTES * 2, ("file", "files", "image", "images"))
        if not form.files:
            raise BadRequest("send one or more images in a 'file' field", param="file")
        if len(form.files) > MAX_UPLOADS:
            raise BadRequest(f"at most {MAX_UPLOADS} uploads; check a folder for more")
        policy = (form.fields.get("policy") or [""])[0] or None
        await checks.policy(policy)  # an unknown policy is refused before anything is kept
        images = [  # decoding is CPU work: off the event loop
            await asyncio.to_thread(decoded, f.data, f.filename or f.name) for f in form.files
        ]
        ids = [await checks.record(i, d, actor.id, policy or "") for i, d in images]
        results = [await checks.run(check_id) for check_id in ids]
        for result in results:
            track_change(request, "moderation.check", result["id"], verdict=result["verdict"])
        return web.json_response({"object": "list", "data": results})
    body = parse_body(FolderBody, await read_json(request))
    folder = _confined(appliance, body.path)
    await checks.policy(body.policy)
    files = await asyncio.to_thread(folder_images, folder, MAX_BATCH)
    if not files:
        raise BadRequest(f"{folder} holds no images", param="path")
    batch = f"bat_{uuid.uuid4().hex[:20]}"
    skipped = []
    for file in files:
        try:
            image, sha = await asyncio.to_thread(read_image, file)
        except (ApplianceError, OSError) as exc:
            skipped.append({"path": str(file), "error": getattr(exc, "message", str(exc))})
            continue
        await checks.record(image, sha, actor.id, body.policy or "", batch)
    if len(skipped) == len(files):
        raise BadRequest(f"no image in {folder} could be read: {skipped[0]['error']}", param="path")
    checks.wake()
    track_change(request, "moderation.batch", batch, path=str(folder), files=len(files))
    return web.json_response({**await checks.batch(batch), "skipped": skipped}, status=202)


@routes.get("/checks/{id}")
async def get_check(request: web.Request) -> web.Response:
    actor = require(request, "moderation.check")
    check = await checks_of(appliance_of(request)).get(request.match_info["id"])
    if check["owner"] != actor.id and not actor.is_admin:
        raise Forbidden("this check belongs to someone else")
    return web.json_response(check)


@routes.get("/checks/{id}/image")
async def get_image(request: web.Request) -> web.StreamResponse:
    require(request, "moderation.review")
    checks = checks_of(appliance_of(request))
    check = await checks.get(request.match_info["id"])
    return web.FileResponse(checks.folder / f"{check['id']}.png")


@routes.get("/batches/{id}")
async def get_batch(request: web.Request) -> web.Response:
    require(request, "moderation.check")
    return web.json_response(await checks_of(appliance_of(request)).batch(request.match_info["id"]))


@routes.get("/queue")
async def queue(request: web.Request) -> web.Response:
    """What awaits a person: checks the policy could not settle (and failed ones), oldest first."""
    require(request, "moderation.review")
    waiting = await checks_of(appliance_of(request)).where(
        "(verdict = 'review' OR status = 'error') AND decision IS NULL", []
    )
    return web.json_response({"object": "list", "data": waiting})


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: str = Field(pattern="^(pass|flag)$")
    note: str = Field(default="", max_length=2000)


@routes.post("/checks/{id}/decision")
async def decision(request: web.Request) -> web.Response:
    actor = require(request, "moderation.review")
    body = parse_body(DecisionBody, await read_json(request))
    checks = checks_of(appliance_of(request))
    check_id = request.match_info["id"]
    await checks.decide_by_person(check_id, body.verdict, actor.id, body.note)
    track_change(request, "moderation.decision", check_id, verdict=body.verdict, note=body.note)
    return web.json_response(await checks.get(check_id))


@routes.get("/policies")
async def policies(request: web.Request) -> web.Response:
    require(request, "moderation.manage")
    found = await checks_of(appliance_of(request)).policies()
    return web.json_response({"object": "list", "data": [p.public() for p in found]})


@routes.get("/policies/{name}")
async def get_policy(request: web.Request) -> web.Response:
    require(request, "moderation.manage")
    policy = await checks_of(appliance_of(request)).policy(request.match_info["name"])
    return web.json_response(policy.public())


@routes.put("/policies/{name}")
async def put_policy(request: web.Request) -> web.Response:
    """A policy as JSON, or as the TOML of a policy file (``Content-Type: application/toml``)."""
    require(request, "moderation.manage")
    name = request.match_info["name"]
    if request.content_type in ("application/toml", "text/plain"):
        raw = await request.content.read(1024 * 1024 + 1)
        if len(raw) > 1024 * 1024:
            raise BadRequest("a policy file is at most 1 MiB")
        policy = parse_policy_toml(raw.decode(errors="replace"))
    else:
        policy = parse_policy(await read_json(request))
    if policy.name != name:
        raise BadRequest(f"the policy is named {policy.name!r}, not {name!r}", param="name")
    await checks_of(appliance_of(request)).save_policy(policy)
    track_change(request, "moderation.policy_saved", name, questions=len(policy.questions))
    return web.json_response(policy.public())


@routes.delete("/policies/{name}")
async def delete_policy(request: web.Request) -> web.Response:
    require(request, "moderation.manage")
    name = request.match_info["name"]
    if not await checks_of(appliance_of(request)).delete_policy(name):
        raise BadRequest(f"no moderation policy named {name!r}", param="name")
    track_change(request, "moderation.policy_deleted", name)
    return web.json_response({"deleted": name})


@hookimpl
def register_routes(appliance: Appliance) -> list[web.AbstractRouteDef]:
    return list(routes)


@hookimpl
def register_commands(cli: Any) -> None:
    from appliance_moderation.cli import moderation_cli

    cli.add_command(moderation_cli)
