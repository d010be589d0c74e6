from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from appliance import __version__
from appliance.cli.main import cli


def run(*args: str, home: Path) -> str:
    result = CliRunner().invoke(cli, [*args, "--home", str(home)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_tokens_create_list_revoke(tmp_path: Path) -> None:
    out = run("tokens", "create", "--role", "user", "--name", "alice", home=tmp_path)
    token = out.strip().splitlines()[-1]
    assert token.startswith("apl_")
    rows = json.loads(run("tokens", "list", "--json", home=tmp_path))
    assert [(r["name"], r["role"]) for r in rows] == [("alice", "user")]
    assert "hash" not in rows[0]
    assert token not in json.dumps(rows)
    run("tokens", "revoke", rows[0]["id"], home=tmp_path)
    assert json.loads(run("tokens", "list", "--json", home=tmp_path)) == []


def test_revoking_an_unknown_token_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["tokens", "revoke", "nope", "--home", str(tmp_path)])
    assert result.exit_code != 0
    assert "no active token" in result.output


def test_bad_role_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["tokens", "create", "--role", "root", "--home", str(tmp_path)]
    )
    assert result.exit_code == 2


def test_plugins_list_shows_echo() -> None:
    result = CliRunner().invoke(
        cli, ["plugins", "list", "--json"], env={"APPLIANCE_LOAD_PLUGINS": "echo"}
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["name"] for r in records] == ["echo"]
    assert records[0]["loaded"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "APPLIANCE_LOAD_PLUGINS": "echo",
        "APPLIANCE_MDNS": "false",
        "APPLIANCE_CALIBRATE_AT_START": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "serve", "--port", str(port), "--home", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                url = f"http://127.0.0.1:{port}/appliance/health"
                with urllib.request.urlopen(url, timeout=10) as r:
                    assert json.loads(r.read())["status"] == "ok"
                    break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert "stopping" in output
    finally:
        if proc.poll() is None:
            proc.kill()
