from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance import hookimpl
from appliance.app import create_app
from appliance.errors import PluginError
from appliance.keys import APPLIANCE
from appliance.plugins import load_plugins
from tests.fixtures import ClientFactory, make_settings


@pytest.fixture
def fake_distributions(tmp_path: Path) -> Iterator[Path]:
    """Installs, on sys.path, distributions whose entry points are broken in different ways."""
    site = tmp_path / "site"
    site.mkdir()
    plugins = {
        "broken_import": "raise RuntimeError('boom at import')\n",
        "unknown_hook": textwrap.dedent(
            """
            from appliance import hookimpl

            @hookimpl
            def register_spaceships(register):
                pass
            """
        ),
        "good_extra": textwrap.dedent(
            """
            from aiohttp import web
            from appliance import hookimpl

            routes = web.RouteTableDef()

            @routes.get("/hello")
            async def hello(request):
                return web.json_response({"hello": "world"})

            @hookimpl
            def register_routes(appliance):
                return list(routes)
            """
        ),
    }
    for name, source in plugins.items():
        (site / f"{name}.py").write_text(source)
        info = site / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[appliance]\n{name} = {name}\n")
    sys.path.insert(0, str(site))
    yield site
    sys.path.remove(str(site))
    for name in plugins:
        sys.modules.pop(name, None)


def test_empty_allow_list_loads_only_builtins() -> None:
    plugins = load_plugins(())
    assert all(r["builtin"] for r in plugins.as_list())


def test_allow_list_loads_only_named(fake_distributions: Path) -> None:
    plugins = load_plugins(("echo",))
    names = {r["name"] for r in plugins.as_list() if not r["builtin"]}
    assert names == {"echo"}


def test_unset_allow_list_loads_all(fake_distributions: Path) -> None:
    names = {r["name"] for r in load_plugins(None).as_list()}
    assert {"echo", "broken_import", "unknown_hook", "good_extra"} <= names


def test_broken_plugins_are_recorded_and_skipped(fake_distributions: Path) -> None:
    plugins = load_plugins(("broken_import", "unknown_hook", "good_extra"))
    records = {r["name"]: r for r in plugins.as_list()}
    assert not records["broken_import"]["loaded"]
    assert "boom at import" in records["broken_import"]["error"]
    assert not records["unknown_hook"]["loaded"]
    assert "register_spaceships" in records["unknown_hook"]["error"]
    assert records["good_extra"]["loaded"]
    assert records["good_extra"]["version"] == "1.0"
    assert records["good_extra"]["hooks"] == ["register_routes"]


async def test_box_keeps_serving_with_broken_plugins(
    fake_distributions: Path, make_client: ClientFactory
) -> None:
    client = await make_client(load_plugins=("echo", "broken_import", "unknown_hook", "good_extra"))
    health = await client.get("/appliance/health")
    assert health.status == 200
    hello = await client.get("/plugins/good_extra/hello")
    assert (await hello.json()) == {"hello": "world"}
    listing = await (await client.get("/appliance/plugins")).json()
    errors = {p["name"]: p["error"] for p in listing["plugins"]}
    assert "boom at import" in errors["broken_import"]
    chat = await client.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status == 200


class RaisesInRegistration:
    @hookimpl
    def register_chat_models(self, register: Any, profile: Any) -> None:
        raise ValueError("cannot find my weights")


async def test_plugin_raising_in_a_hook_is_skipped(make_client: ClientFactory) -> None:
    client = await make_client(extra_plugins=(("fragile", RaisesInRegistration()),))
    listing = await (await client.get("/appliance/plugins")).json()
    fragile = next(p for p in listing["plugins"] if p["name"] == "fragile")
    assert not fragile["loaded"]
    assert "cannot find my weights" in fragile["error"]
    models = await (await client.get("/v1/models")).json()
    assert "echo" in [m["id"] for m in models["data"]]


class DuplicateEcho:
    @hookimpl
    def register_chat_models(self, register: Any, profile: Any) -> None:
        from appliance_echo import EchoModel

        register(EchoModel())


def test_duplicate_model_name_fails_start_up_clearly(home: Path) -> None:
    with pytest.raises(PluginError, match="'echo' is registered by both"):
        create_app(make_settings(home), extra_plugins=(("copycat", DuplicateEcho()),))


def test_disabled_plugins_are_not_loaded() -> None:
    names = {r["name"] for r in load_plugins(None, deny=("echo",)).as_list()}
    assert "echo" not in names


class FailingListener:
    @hookimpl
    def track_event(self, appliance: Any, event: Any) -> None:
        raise RuntimeError("listener down")


class AsyncListener:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    async def track_event(self, appliance: Any, event: Any) -> None:
        self.seen.append(event.name)


async def test_a_failing_event_listener_neither_fails_requests_nor_silences_others(
    make_client: ClientFactory,
) -> None:
    listener = AsyncListener()
    client = await make_client(
        extra_plugins=(("failing", FailingListener()), ("listening", listener))
    )
    assert (await client.get("/v1/models")).status == 200
    await client.app[APPLIANCE].drain()
    assert listener.seen, "the async listener heard nothing"
    listing = await (await client.get("/appliance/plugins")).json()
    failing = next(p for p in listing["plugins"] if p["name"] == "failing")
    assert failing["loaded"], "a request-time failure must not unregister the plugin"
