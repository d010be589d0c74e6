"""Typed keys for what the aiohttp application carries, and typed accessors for requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from appliance.auth import Actor
    from appliance.core import Appliance

APPLIANCE: web.AppKey[Appliance] = web.AppKey("appliance")
_ACTOR: web.RequestKey[Actor | None] = web.RequestKey("actor")
_REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")


def appliance_of(request: web.Request) -> Appliance:
    return request.config_dict[APPLIANCE]


def actor_of(request: web.Request) -> Actor | None:
    return request.get(_ACTOR)


def set_actor(request: web.Request, actor: Actor | None) -> None:
    request[_ACTOR] = actor


def request_id_of(request: web.Request) -> str:
    return str(request.get(_REQUEST_ID, ""))


def set_request_id(request: web.Request, value: str) -> None:
    request[_REQUEST_ID] = value
