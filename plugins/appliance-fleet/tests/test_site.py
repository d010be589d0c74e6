"""A site of boxes in network namespaces joined by a bridge (made and removed here): box A with no
chat model, box B with smollm2, the same key; box C with another key. A lists B's model and
answers through B exactly as B answers directly (temperature 0; OpenAI and Ollama; streamed and
not); A's history has the exchange; a model file is copied from B with `--from-peer` (never by
a box with another key, nor to a person's token); B killed with SIGKILL: A answers 503 within
30 s and drops the model within 60 s; C is never a peer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from appliance import sha256_file
from tests import netns
from tests.live import CLI, TEST_MODELS, LiveBox, admin_token

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(netns.skip_reason() is not None, reason=str(netns.skip_reason())),
]
KEY, OTHER_KEY = "fleet-key-of-the-office-0123456789", "another-fleet-entirely-9876543210"
MODEL = "smollm2:135m"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
OPENAI = {"model": MODEL, "messages": MESSAGES, "temperature": 0, "max_tokens": 20}
OLLAMA = {"model": MODEL, "messages": MESSAGES, "options": {"temperature": 0, "num_predict": 20}}


def call(url: str, path: str, token: str, body: Any = None) -> tuple[int, str]:
    request = urllib.request.Request(
        url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def data(url: str, path: str, token: str, body: Any = None) -> Any:
    status, text = call(url, path, token, body)
    assert status == 200, text
    return json.loads(text)


def streamed_openai(url: str, token: str) -> str:
    status, text = call(url, "/v1/chat/completions", token, {**OPENAI, "stream": True})
    assert status == 200, text
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def streamed_ollama(url: str, token: str) -> str:
    status, text = call(url, "/api/chat", token, {**OLLAMA, "stream": True})
    assert status == 200, text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines[-1]["done"] is True
    return "".join(line["message"]["content"] for line in lines)


def answers(url: str, token: str) -> dict[str, str]:
    plain = data(url, "/v1/chat/completions", token, OPENAI)["choices"][0]["message"]["content"]
    ollama = data(url, "/api/chat", token, {**OLLAMA, "stream": False})["message"]["content"]
    return {
        "openai": plain,
        "openai stream": streamed_openai(url, token),
        "ollama": ollama,
        "ollama stream": streamed_ollama(url, token),
    }


def copy_model(site: netns.Site, tmp_path: Path, key: str) -> subprocess.CompletedProcess[str]:
    """`appliance models fetch --from-peer` on a fresh store, from namespace A."""
    argv = [*CLI, "models", "fetch", MODEL, "--from-peer", "Box B"]
    return subprocess.run(
        site.command(0, [*argv, "--models-dir", str(tmp_path / f"copied-{key[:4]}")]),
        env={
            **os.environ,
            "APPLIANCE_FLEET_KEY": key,
            "APPLIANCE_HOST": site.address(0),
            "APPLIANCE_HOME": str(tmp_path / f"copier-{key[:4]}"),
            "APPLIANCE_LOAD_PLUGINS": "fleet",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def box(site: netns.Site, index: int, home: Path, plugins: str, key: str, name: str) -> LiveBox:
    return LiveBox(
        home,
        plugins=plugins,
        address=site.address(index),
        prefix=tuple(site.command(index, [])),
        env={
            "APPLIANCE_MDNS": "true",
            "APPLIANCE_FLEET_KEY": key,
            "APPLIANCE_INSTANCE_NAME": name,
            "APPLIANCE_PARALLEL": "1",
        },
    )


def wait_until(check: Any, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds} s")


def test_a_site_of_boxes_shares_a_real_model_and_survives_one_being_killed(
    tmp_path: Path,
) -> None:
    tokens = {name: admin_token(tmp_path / name) for name in "abc"}
    with netns.site(3) as site:
        b = box(site, 1, tmp_path / "b", "llama,fleet", KEY, "Box B").start()
        c = box(site, 2, tmp_path / "c", "llama,fleet", OTHER_KEY, "Box C").start()
        a = box(site, 0, tmp_path / "a", "fleet", KEY, "Box A").start()
        try:

            def a_lists_the_model() -> bool:
                status, text = call(a.url, "/v1/models", tokens["a"])
                return status == 200 and any(m["id"] == MODEL for m in json.loads(text)["data"])

            wait_until(a_lists_the_model, 45)
            listed = {m["id"]: m for m in data(a.url, "/v1/models", tokens["a"])["data"]}
            assert listed[MODEL]["owned_by"] == "Box B"
            tags = {m["name"] for m in data(a.url, "/api/tags", tokens["a"])["models"]}
            assert MODEL in tags
            assert [p["name"] for p in data(a.url, "/appliance/fleet", tokens["a"])["peers"]] == [
                "Box B"
            ]
            assert data(c.url, "/appliance/fleet", tokens["c"])["peers"] == []

            direct = answers(b.url, tokens["b"])
            assert all(direct.values()), direct
            assert answers(a.url, tokens["a"]) == direct
            history = data(a.url, "/appliance/conversations", tokens["a"])["conversations"]
            assert history and {h["model"] for h in history} == {MODEL}

            copied = copy_model(site, tmp_path, KEY)
            assert copied.returncode == 0, copied.stdout + copied.stderr
            assert "fetched" in copied.stdout and "sha256 ok" in copied.stdout
            [file] = (tmp_path / f"copied-{KEY[:4]}").glob("*/*.gguf")
            assert sha256_file(file) == sha256_file(next(TEST_MODELS.glob(f"*/{file.name}")))
            stranger = copy_model(site, tmp_path, OTHER_KEY)
            assert stranger.returncode != 0 and "no box of this fleet named 'Box B'" in (
                stranger.stderr
            )
            status, _ = call(b.url, f"/appliance/fleet/models/{MODEL}/Q4_1", tokens["b"])
            assert status == 403  # a person's token, even an admin's, is not a peer

            b.kill(signal.SIGKILL)
            started = time.monotonic()
            status, refused = call(a.url, "/v1/chat/completions", tokens["a"], OPENAI)
            assert status == 503 and time.monotonic() - started < 30, refused
            wait_until(lambda: not a_lists_the_model(), 60)
            for log in (a.output(), c.output()):
                assert KEY not in log and OTHER_KEY not in log
        finally:
            for each in (a, b, c):
                each.stop()
