"""Shared fixtures: a temporary home, the app with plugins loaded explicitly, tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from appliance.app import create_app
from appliance.auth import create_token
from appliance.keys import APPLIANCE
from appliance.settings import Settings, load_settings

ClientFactory = Callable[..., Awaitable[TestClient[Any, web.Application]]]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def make_settings(home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "load_plugins": ("echo",),
        "n_threads": 2,
        "calibrate_at_start": False,
        "rag_roots": (home.parent,),
    }
    values.update(overrides)
    return load_settings(values, environ={})


@pytest.fixture
def settings(home: Path) -> Settings:
    return make_settings(home)


@pytest.fixture
def make_client(aiohttp_client: Any, home: Path) -> ClientFactory:
    async def factory(
        extra_plugins: tuple[tuple[str, object], ...] = (), **overrides: Any
    ) -> TestClient[Any, web.Application]:
        app = create_app(make_settings(home, **overrides), extra_plugins=extra_plugins)
        return await aiohttp_client(app, server_kwargs={"handler_cancellation": True})

    return factory


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, web.Application]:
    return await make_client()


def new_token(client: TestClient[Any, web.Application], role: str) -> str:
    appliance = client.app[APPLIANCE]
    token, _ = appliance.db.write_sync(lambda db: create_token(db, role, f"test {role}"))
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
