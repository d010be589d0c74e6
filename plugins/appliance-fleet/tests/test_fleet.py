"""A site with several boxes, on loopback: box A (no model of its own) finds box B (same key)
over mDNS, lists B's models and answers through B exactly as B answers; box C (another key) is
never a peer; B killed with SIGKILL: A answers 503 at once and drops B's models within 60 s."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from appliance_fleet.auth import cert_sha256, proof_ok, prove

from appliance.tls import make_self_signed
from tests.live import LiveBox, admin_token

pytestmark = pytest.mark.slow
KEY, OTHER_KEY = "fleet-key-of-the-office-0123456789", "another-fleet-entirely-9876543210"
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "one two three"}]}


def call(url: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=40) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    text = raw.decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def transcribe(url: str, token: str | None = None) -> dict[str, Any]:
    """A second of a tone and a hum, as a WAV upload (whisper answers deterministically)."""
    buffer = io.BytesIO()
    t = np.arange(16000) / 16000
    soundfile.write(
        buffer, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, format="WAV"
    )
    boundary = "fleet-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + buffer.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + "/v1/audio/transcriptions", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=120) as response:
        return dict(json.loads(response.read()))


def box(home: Path, plugins: str, key: str, name: str) -> LiveBox:
    env = {"APPLIANCE_MDNS": "true", "APPLIANCE_FLEET_KEY": key, "APPLIANCE_INSTANCE_NAME": name}
    return LiveBox(home, plugins=plugins, env=env)


def wait_until(check: Any, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds} s")


def test_a_fleet_shares_its_models_and_survives_a_peer_leaving(tmp_path: Path) -> None:
    b_token = admin_token(tmp_path / "b")  # B requires a token: A must sign its calls
    b = box(tmp_path / "b", "echo,whisper,fleet", KEY, "Box B").start()
    c = box(tmp_path / "c", "echo,fleet", OTHER_KEY, "Box C").start()
    a = box(tmp_path / "a", "fleet", KEY, "Box A").start()
    try:

        def a_lists_echo() -> bool:
            status, listed = call(a.url, "/v1/models")
            return status == 200 and any(m["id"] == "echo" for m in listed["data"])

        wait_until(a_lists_echo, 45)
        listed = {m["id"]: m for m in call(a.url, "/v1/models")[1]["data"]}
        assert listed["echo"]["owned_by"] == "Box B" and "echo-embed" in listed
        fleet = call(a.url, "/appliance/fleet")[1]
        assert [p["name"] for p in fleet["peers"]] == ["Box B"]
        assert call(c.url, "/appliance/fleet")[1]["peers"] == []
        assert KEY not in json.dumps(fleet) and len(fleet["fleet"]) == 16

        through = call(a.url, "/v1/chat/completions", {**CHAT, "temperature": 0})[1]
        direct = call(b.url, "/v1/chat/completions", {**CHAT, "temperature": 0}, b_token)[1]
        assert (
            through["choices"][0]["message"]["content"]
            == direct["choices"][0]["message"]["content"]
        )
        ollama = call(a.url, "/api/chat", {**CHAT, "stream": True})[1]
        lines = [json.loads(line) for line in ollama.splitlines() if line.strip()]
        assert (
            "".join(x["message"]["content"] for x in lines) == "one two three" and lines[-1]["done"]
        )
        vectors = call(a.url, "/v1/embeddings", {"model": "echo-embed", "input": "hi"})[1]
        mine = call(b.url, "/v1/embeddings", {"model": "echo-embed", "input": "hi"}, b_token)[1]
        assert vectors["data"][0]["embedding"] == mine["data"][0]["embedding"]
        heard = transcribe(a.url)
        assert heard == transcribe(b.url, b_token) and "text" in heard
        history = call(a.url, "/appliance/conversations")[1]["conversations"]
        assert history and history[0]["model"] == "echo"
        audit = call(b.url, "/appliance/audit?action=request", token=b_token)[1]["audit"]
        assert any(
            r["role"] == "fleet" and r["resource"] == "POST /v1/chat/completions" for r in audit
        )

        listed_by_cli = subprocess.run(
            [sys.executable, "-m", "appliance", "fleet", "list", "--timeout", "4"],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "APPLIANCE_FLEET_KEY": KEY,
                "APPLIANCE_LOAD_PLUGINS": "fleet",
                "APPLIANCE_HOST": "127.0.0.1",
                "APPLIANCE_HOME": str(tmp_path / "d"),
            },
        )
        assert "Box B" in listed_by_cli.stdout and "Box C" not in listed_by_cli.stdout, (
            listed_by_cli.stdout + listed_by_cli.stderr
        )

        b.kill(signal.SIGKILL)
        started = time.monotonic()
        status, refused = call(a.url, "/v1/chat/completions", CHAT)
        assert status == 503 and time.monotonic() - started < 30, refused
        wait_until(lambda: not a_lists_echo(), 60)
        for log in (a.output(), c.output()):
            assert KEY not in log and OTHER_KEY not in log
    finally:
        for each in (a, b, c):
            each.stop()


def test_a_peer_over_https_is_pinned_to_the_certificate_its_proof_names(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    make_self_signed("box-b", cert, key)
    pinned = cert_sha256(cert)
    tls = {"APPLIANCE_TLS_CERT": str(cert), "APPLIANCE_TLS_KEY": str(key)}
    b = box(tmp_path / "b", "echo,fleet", KEY, "Box B")
    b.env = {**(b.env or {}), **tls}
    b.scheme = "https"
    b.start()
    a = box(tmp_path / "a", "fleet", KEY, "Box A").start()
    try:
        wait_until(lambda: call(a.url, "/appliance/fleet")[1]["peers"] != [], 45)
        [peer] = call(a.url, "/appliance/fleet")[1]["peers"]
        assert peer["url"].startswith("https://") and peer["tls_sha256"] == pinned
        through = call(a.url, "/v1/chat/completions", CHAT)[1]
        assert through["choices"][0]["message"]["content"] == "one two three"
        vectors = call(a.url, "/v1/embeddings", {"model": "echo-embed", "input": "hi"})[1]
        assert len(vectors["data"][0]["embedding"]) > 0
    finally:
        for each in (a, b):
            each.stop()


def test_a_proof_relayed_through_another_certificate_is_refused() -> None:
    proof = prove(KEY, "box-b", "challenge", "a" * 64)
    assert proof_ok(KEY, "box-b", "challenge", proof, "a" * 64)
    assert not proof_ok(KEY, "box-b", "challenge", proof, "b" * 64)
    assert not proof_ok(KEY, "box-b", "challenge", proof, "")
    assert not proof_ok(OTHER_KEY, "box-b", "challenge", proof, "a" * 64)
