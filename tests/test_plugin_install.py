"""IT installs a plugin wheel offline: built here, installed into a throwaway environment that
sees the box's packages, listed with its route; a wrong hash is refused; admins only over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
from aiohttp import FormData

from appliance.models.store import sha256_file as sha256_of
from appliance.plugin_admin import pinned_hash
from tests.fixtures import ClientFactory, bearer, new_token

pytestmark = pytest.mark.slow


PLUGIN_SOURCE = textwrap.dedent("""
    from aiohttp import web
    from appliance import hookimpl

    PERMISSIONS = ("history.read",)
    routes = web.RouteTableDef()

    @routes.get("/hello")
    async def hello(request):
        return web.json_response({"hello": "from a wheel"})

    @hookimpl
    def register_routes(appliance):
        return list(routes)
""")


def build_wheel(tmp: Path, name: str = "hello") -> Path:
    """Write a real wheel (a zip with dist-info and RECORD) for a one-module plugin."""
    dist, version = f"appliance_{name}", "1.2.3"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": PLUGIN_SOURCE.encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: appliance-{name}\nVersion: {version}\n".encode()
        ),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[appliance]\n{name} = {dist}\n".encode(),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out = tmp / "wheelhouse"
    out.mkdir(exist_ok=True)
    wheel = out / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


ROUTE_CHECK = textwrap.dedent("""
    import asyncio, sys
    from aiohttp.test_utils import TestClient, TestServer
    from appliance.app import create_app
    from appliance.settings import load_settings

    async def main():
        settings = load_settings({"home": sys.argv[1], "calibrate_at_start": False}, environ={})
        async with TestClient(TestServer(create_app(settings))) as client:
            response = await client.get("/plugins/hello/hello")
            print(response.status, (await response.json())["hello"])

    asyncio.run(main())
""")


def throwaway_env(tmp: Path) -> Path:
    """A venv that also sees this environment's packages (so `appliance` imports)."""
    env = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    site = next((env / "lib").glob("python3*/site-packages"))
    ours = sysconfig.get_paths()["purelib"]
    (site / "zz_box.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return env / "bin" / "python"


def appliance(python: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "appliance", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env={"APPLIANCE_LOAD_PLUGINS": "", "PATH": "/usr/bin:/bin"},
    )


def test_install_offline_list_route_disable_and_remove(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    python = throwaway_env(tmp_path)
    home = tmp_path / "home"
    bad = tmp_path / "bad.sha256"
    bad.write_text(f"{'0' * 64}  {wheel.name}\n")
    refused = appliance(
        python, home, "plugins", "install", str(wheel), "--require-hashes", str(bad)
    )
    assert refused.returncode != 0 and "refusing" not in refused.stdout
    assert "pinned" in refused.stderr
    good = tmp_path / "good.sha256"
    good.write_text(f"{sha256_of(wheel)}  {wheel.name}\n")
    done = appliance(python, home, "plugins", "install", str(wheel), "--require-hashes", str(good))
    assert done.returncode == 0, done.stderr
    assert "new plugins: hello" in done.stdout
    env_all = {"PATH": "/usr/bin:/bin"}
    listed = subprocess.run(
        [str(python), "-m", "appliance", "plugins", "list", "--json", "--home", str(home)],
        capture_output=True,
        text=True,
        env=env_all,
    )
    hello = next(p for p in json.loads(listed.stdout) if p["name"] == "hello")
    assert hello["version"] == "1.2.3" and hello["loaded"]
    assert hello["permissions"] == ["history.read"]
    info = subprocess.run(
        [str(python), "-m", "appliance", "plugins", "info", "hello", "--home", str(home)],
        capture_output=True,
        text=True,
        env=env_all,
    )
    assert "GET /plugins/hello/hello" in info.stdout, info.stderr
    served = subprocess.run(
        [str(python), "-c", ROUTE_CHECK, str(home)], capture_output=True, text=True, env=env_all
    )
    assert served.stdout.strip() == "200 from a wheel", served.stderr
    assert (
        subprocess.run(
            [str(python), "-m", "appliance", "plugins", "disable", "hello", "--home", str(home)],
            env=env_all,
        ).returncode
        == 0
    )
    relisted = subprocess.run(
        [str(python), "-m", "appliance", "plugins", "list", "--json", "--home", str(home)],
        capture_output=True,
        text=True,
        env=env_all,
    )
    assert "hello" not in [p["name"] for p in json.loads(relisted.stdout)]
    removed = subprocess.run(
        [str(python), "-m", "appliance", "plugins", "remove", "hello", "--home", str(home)],
        capture_output=True,
        text=True,
        env=env_all,
    )
    assert removed.returncode == 0 and "appliance-hello" in removed.stdout
    audit = subprocess.run(
        [
            str(python),
            "-c",
            "import sqlite3,sys; print([r[0] for r in sqlite3.connect(sys.argv[1])"
            ".execute('select action from audit order by id')])",
            str(home / "appliance.db"),
        ],
        capture_output=True,
        text=True,
    )
    for action in (
        "plugin.install_refused",
        "plugin.installed",
        "plugin.disabled",
        "plugin.removed",
    ):
        assert action in audit.stdout


def test_hash_files_in_both_formats(tmp_path: Path) -> None:
    wheel = tmp_path / "appliance_hello-1.2.3-py3-none-any.whl"
    wheel.write_bytes(b"x")
    digest = "ab" * 32
    (tmp_path / "a").write_text(f"{digest}  {wheel.name}\n")
    (tmp_path / "b").write_text(f"appliance-hello==1.2.3 --hash=sha256:{digest}\n")
    assert pinned_hash(tmp_path / "a", wheel) == digest
    assert pinned_hash(tmp_path / "b", wheel) == digest


async def test_http_plugin_management_is_admin_only_and_checks_the_hash(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    client = await make_client(host="0.0.0.0")
    user, admin = new_token(client, "user"), new_token(client, "admin")
    for method, path in [
        ("POST", "/appliance/plugins"),
        ("POST", "/appliance/plugins/echo/disable"),
        ("POST", "/appliance/plugins/echo/enable"),
        ("DELETE", "/appliance/plugins/echo"),
    ]:
        response = await client.request(method, path, headers=bearer(user))
        assert response.status == 403, path
    wheel = build_wheel(tmp_path, "upload")
    form = FormData()
    form.add_field("sha256", "1" * 64)
    form.add_field("file", wheel.read_bytes(), filename=wheel.name)
    wrong = await client.post("/appliance/plugins", data=form, headers=bearer(admin))
    assert wrong.status == 403 and "pinned" in (await wrong.json())["error"]["message"]
    missing = await client.post(
        "/appliance/plugins", data=FormData({"sha256": "1" * 64}), headers=bearer(admin)
    )
    assert missing.status == 400
    toggled = await client.post("/appliance/plugins/echo/disable", headers=bearer(admin))
    assert toggled.status == 200 and (await toggled.json())["restart_required"]
    assert (
        await client.post("/appliance/plugins/echo/enable", headers=bearer(admin))
    ).status == 200
    unknown = await client.post("/appliance/plugins/nope/disable", headers=bearer(admin))
    assert unknown.status == 404
