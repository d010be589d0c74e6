from __future__ import annotations

import ast
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from appliance import appliance_of, hookimpl
from appliance.app import create_app
from appliance.errors import PluginError
from appliance.keys import APPLIANCE
from appliance.plugins import load_plugins
from tests.fixtures import ClientFactory, bearer, make_settings, new_token


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


async def fortune(request: web.Request) -> web.Response:
    return web.json_response({"fortune": "today is a good day"})


class PlainAiohttpRoutes:
    """Routes the way any aiohttp tutorial writes them."""

    @hookimpl
    def register_routes(self, appliance: Any) -> list[web.AbstractRouteDef]:
        return [web.get("/fortune", fortune), web.static("/files", STATIC_DIR)]


table = web.RouteTableDef()


@table.get("/")
async def table_root(request: web.Request) -> web.Response:
    return web.json_response({"table": appliance_of(request).id})


class RouteTable:
    @hookimpl
    def register_routes(self, appliance: Any) -> web.RouteTableDef:
        return table


class ClashingRoutes:
    @hookimpl
    def register_routes(self, appliance: Any) -> list[web.AbstractRouteDef]:
        return [web.get("/same", fortune), web.get("/same", fortune)]


class NotRoutes:
    @hookimpl
    def register_routes(self, appliance: Any) -> Any:
        return [("GET", "/x", fortune)]


STATIC_DIR = Path(__file__).parent
THIS_FILE = Path(__file__)
THIS_FILE_BYTES = THIS_FILE.read_bytes()


async def test_plugin_routes_mount_as_aiohttp_writes_them_and_broken_ones_are_contained(
    make_client: ClientFactory,
) -> None:
    client = await make_client(
        extra_plugins=(
            ("fortune", PlainAiohttpRoutes()),
            ("table", RouteTable()),
            ("clash", ClashingRoutes()),
            ("notroutes", NotRoutes()),
        )
    )
    assert await (await client.get("/plugins/fortune/fortune")).json() == {
        "fortune": "today is a good day"
    }
    head = await client.head("/plugins/fortune/fortune")
    assert head.status == 200
    served = await client.get(f"/plugins/fortune/files/{THIS_FILE.name}")
    assert served.status == 200 and await served.read() == THIS_FILE_BYTES
    appliance = client.app[APPLIANCE]
    assert await (await client.get("/plugins/table/")).json() == {"table": appliance.id}
    listing = {
        p["name"]: p for p in (await (await client.get("/appliance/plugins")).json())["plugins"]
    }
    assert (
        listing["fortune"]["loaded"]
        and "GET /plugins/fortune/fortune" in listing["fortune"]["routes"]
    )
    for broken in ("clash", "notroutes"):
        assert not listing[broken]["loaded"] and "register_routes" in listing[broken]["error"]
    assert (await client.get("/plugins/clash/same")).status == 404
    assert (await client.get("/appliance/health")).status == 200


class AsyncAbstainingAuth:
    """An ``async def actor_from_request`` that does not recognise anyone (the docs allow it)."""

    def __init__(self) -> None:
        self.asked = 0

    @hookimpl(tryfirst=True)
    async def actor_from_request(self, appliance: Any, request: Any) -> None:
        self.asked += 1
        return None


async def test_an_async_none_does_not_win_over_token_auth(make_client: ClientFactory) -> None:
    abstaining = AsyncAbstainingAuth()
    client = await make_client(host="0.0.0.0", extra_plugins=(("abstain", abstaining),))
    admin = new_token(client, "admin")
    response = await client.get("/appliance/tokens", headers=bearer(admin))
    assert response.status == 200 and abstaining.asked >= 1
    assert (await client.get("/appliance/tokens")).status == 401
    await client.app[APPLIANCE].drain()
    rows = client.app[APPLIANCE].db.read_sync(
        lambda db: list(db["audit"].rows_where("resource = 'GET /appliance/tokens'"))
    )
    assert [r["role"] for r in rows][:1] == ["admin"], "the request was not counted as the admin"


class Wrappers:
    """pluggy's wrappers, both styles: they see and change the answers of the others."""

    @hookimpl(wrapper=True)
    def mdns_properties(self, appliance: Any) -> Any:
        answers = yield
        return [*answers, {"wrapped": str(len(answers))}]

    @hookimpl(hookwrapper=True)
    def permission_allowed(self, appliance: Any, actor: Any, action: str, resource: Any) -> Any:
        outcome = yield
        if action == "tokens.manage":
            outcome.force_result([False])


class ExtraTxt:
    @hookimpl
    def mdns_properties(self, appliance: Any) -> dict[str, str]:
        return {"extra": "1"}


async def test_hook_wrappers_are_honoured(make_client: ClientFactory) -> None:
    from appliance.discovery.mdns import txt_properties

    client = await make_client(extra_plugins=(("extra", ExtraTxt()), ("wrap", Wrappers())))
    appliance = client.app[APPLIANCE]
    props = await txt_properties(appliance)
    assert props["extra"] == "1" and props["wrapped"] == "1"
    assert (await client.get("/appliance/tokens")).status == 403  # the wrapper vetoed it
    assert (await client.get("/appliance/plugins")).status == 200


BUNDLED = Path(__file__).parents[1] / "plugins"


def test_bundled_plugins_import_only_the_public_surface() -> None:
    private = []
    for source in BUNDLED.glob("*/appliance_*/**/*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            private += [
                f"{source.relative_to(BUNDLED)}: {n}" for n in names if n.startswith("appliance.")
            ]
    assert not private, "bundled plugins import private modules:\n" + "\n".join(private)


def test_registry_changes_go_through_methods() -> None:
    from appliance_echo import EchoModel

    from appliance.registry import Registered

    models: Registered[Any] = Registered("chat model")
    first, second = EchoModel(), EchoModel()
    models.add("echo", first, "a")
    with pytest.raises(PluginError):
        models.replace("echo", second, "b")
    models.replace("echo:latest", second, "a")
    assert models.get("echo") is second and models.owner("echo") == "a"
    assert not models.remove("echo", owner="b") and models.remove("echo", owner="a")
    assert "echo" not in models and models.find("echo") is None
