"""The third-party plugin in docs/example-plugin, as an outside author would ship it: built into a
wheel, installed offline with its hash pinned, its command run, and served (routes from
``web.get``/``web.static``, its migration, its lifespan, its permission vote)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.models.store import sha256_file
from tests.test_plugin_install import appliance, throwaway_env

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parents[1] / "docs" / "example-plugin"
PIP_WHEEL = [
    sys.executable,
    "-m",
    "pip",
    "wheel",
    "--no-deps",
    "--no-build-isolation",
    "--no-index",
]

SERVE_CHECK = textwrap.dedent("""
    import asyncio, json, sys
    from aiohttp.test_utils import TestClient, TestServer
    from appliance.app import create_app
    from appliance.auth import create_token
    from appliance.keys import APPLIANCE
    from appliance.settings import load_settings

    async def main():
        settings = load_settings(
            {"home": sys.argv[1], "calibrate_at_start": False, "host": "0.0.0.0"}, environ={}
        )
        app = create_app(settings)
        async with TestClient(TestServer(app)) as client:
            db = app[APPLIANCE].db
            user, _ = db.write_sync(lambda d: create_token(d, "user", "staff"))
            admin, _ = db.write_sync(lambda d: create_token(d, "admin", "it"))
            def auth(token):
                return {"Authorization": f"Bearer {token}"}
            out = {}
            today = await client.get("/plugins/fortune/today", headers=auth(user))
            out["today"] = [today.status, await today.json()]
            anonymous = await client.get("/plugins/fortune/today")
            out["anonymous"] = anonymous.status
            refused = await client.post("/plugins/fortune/", json={"text": "x"}, headers=auth(user))
            out["user_add"] = refused.status
            added = await client.post(
                "/plugins/fortune/", json={"text": "Lunch is at noon."}, headers=auth(admin)
            )
            out["admin_add"] = added.status
            about = await client.get("/plugins/fortune/about/index.html", headers=auth(user))
            out["about"] = [about.status, "Fortune" in await about.text()]
            plugins = await client.get("/appliance/plugins", headers=auth(admin))
            record = next(p for p in (await plugins.json())["plugins"] if p["name"] == "fortune")
            out["record"] = record
            health = await client.get("/appliance/health")
            out["health"] = health.status
        print(json.dumps(out))

    asyncio.run(main())
""")


def test_the_documented_example_plugin_builds_installs_offline_and_serves(tmp_path: Path) -> None:
    wheels = tmp_path / "wheelhouse"
    built = subprocess.run(
        [*PIP_WHEEL, "-w", str(wheels), str(EXAMPLE)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("appliance_fortune-1.0.0-*.whl"))
    (wheels / "SHA256SUMS").write_text(f"{sha256_file(wheel)}  {wheel.name}\n")
    python = throwaway_env(tmp_path)
    home = tmp_path / "home"
    installed = appliance(
        python,
        home,
        "plugins",
        "install",
        str(wheel),
        "--require-hashes",
        str(wheels / "SHA256SUMS"),
    )
    assert installed.returncode == 0, installed.stderr
    assert "new plugins: fortune" in installed.stdout
    env = {
        "PATH": "/usr/bin:/bin",
        "APPLIANCE_HOME": str(home),
        "APPLIANCE_LOAD_PLUGINS": "fortune",
    }
    command = subprocess.run(
        [str(python), "-m", "appliance", "fortune", "add", "Coffee first."],
        capture_output=True,
        text=True,
        env=env,
    )
    assert command.returncode == 0 and "added" in command.stdout, command.stderr
    served = subprocess.run(
        [str(python), "-c", SERVE_CHECK, str(home)], capture_output=True, text=True, env=env
    )
    assert served.returncode == 0, served.stderr
    result = __import__("json").loads(served.stdout.strip().splitlines()[-1])
    # The command's fortune is the only one: the lifespan seeds only an empty table.
    assert result["today"] == [200, {"fortune": "Coffee first.", "told": 1}]
    assert result["anonymous"] == 401 and result["user_add"] == 403
    assert result["admin_add"] == 201 and result["about"] == [200, True]
    assert result["health"] == 200
    record = result["record"]
    assert record["loaded"] and record["error"] is None and record["version"] == "1.0.0"
    assert "GET /plugins/fortune/today" in record["routes"]
    assert "POST /plugins/fortune/" in record["routes"]
    assert {"register_routes", "register_migrations", "lifespan", "register_commands"} <= set(
        record["hooks"]
    )
    listed = subprocess.run(
        [str(python), "-m", "appliance", "fortune", "list"], capture_output=True, text=True, env=env
    )
    assert listed.stdout.splitlines() == ["Coffee first.", "Lunch is at noon."], listed.stderr


def test_the_example_imports_only_the_public_surface() -> None:
    tree = ast.parse((EXAMPLE / "appliance_fortune" / "__init__.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "appliance" in modules
    assert not {m for m in modules if m and m.startswith("appliance.")}
