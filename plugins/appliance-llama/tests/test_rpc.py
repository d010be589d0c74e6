"""One model over two boxes with llama.cpp's RPC backend.

Unit level: the handshake check that keeps ggml from aborting the box, the pool's answers when a
worker is gone, and the layer split. Site level (network namespaces on a bridge the test makes):
a worker in B that allows only A; A's smollm2 split over A and B answers at temperature 0
exactly as a box without RPC; C, not allowed, never gets B's worker and loads alone.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from appliance_llama import rpc
from appliance_llama.rpc_worker import Forwarder, parse_allowed

from tests import netns
from tests.live import CLI, LiveBox, admin_token

CHAT = {
    "model": "smollm2:135m",
    "messages": [{"role": "user", "content": "Name three colours of the rainbow."}],
    "temperature": 0,
    "max_tokens": 24,
}


def silent_server() -> tuple[socket.socket, str]:
    """Accepts connections and never answers (a worker that hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, f"127.0.0.1:{server.getsockname()[1]}"


def closed_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_the_handshake_check_refuses_closed_hung_and_foreign_endpoints() -> None:
    with pytest.raises(rpc.RpcUnavailable, match="cannot be used"):
        rpc.probe(closed_endpoint())
    server, endpoint = silent_server()
    started = time.monotonic()
    with server, pytest.raises(rpc.RpcUnavailable, match="timed out"):
        rpc.probe(endpoint, timeout_s=1.0)
    assert time.monotonic() - started < 3
    with pytest.raises(rpc.RpcUnavailable, match="not HOST:PORT"):
        rpc.probe("no-port-here")


def test_a_pool_whose_worker_is_gone_loads_alone_or_says_why_not() -> None:
    endpoint = closed_endpoint()
    pool = rpc.RpcPool((endpoint,))
    assert pool.devices == []
    [memory] = pool.pooled()
    assert memory.device == f"rpc:{endpoint}" and memory.free_bytes == 0 and memory.problem
    assert pool.split_for("smollm2:135m", 30, needs_pool=False) is None
    with pytest.raises(rpc.RpcUnavailable, match="needs the memory of the RPC workers"):
        pool.split_for("qwen2.5:7b", 28, needs_pool=True)


def test_layers_are_split_in_proportion_to_free_memory() -> None:
    worker = rpc.RpcDevice("10.0.0.2:50052", 1, free_bytes=3 << 30, total_bytes=4 << 30)
    split = rpc.plan_split([worker], 30, local_free=1 << 30)
    assert split is not None and split.gpu_layers == 22 and split.shares == (1.0,)
    assert split.labels == ("cpu", "rpc:10.0.0.2:50052")
    gpu = rpc.RpcDevice("cuda0", 2, free_bytes=1 << 30, total_bytes=8 << 30, local=True)
    on_gpus = rpc.plan_split([worker], 30, local_free=1 << 30, local=[gpu])
    assert on_gpus is not None and on_gpus.labels == ("cuda0", "rpc:10.0.0.2:50052")
    assert on_gpus.gpu_layers == 31 and on_gpus.shares == (0.25, 0.75)
    assert rpc.plan_split([], 30, 1 << 30) is None


async def test_the_forwarder_passes_only_allowed_addresses() -> None:
    import asyncio

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    inner = await asyncio.start_server(echo, "127.0.0.1", 0)
    target = inner.sockets[0].getsockname()[:2]
    results = {}
    for name, allowed in (("allowed", "127.0.0.1"), ("refused", "10.9.9.9")):
        forwarder = Forwarder("127.0.0.1", 0, parse_allowed([allowed]), target)
        server = await asyncio.start_server(forwarder._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        await writer.drain()
        try:
            results[name] = await asyncio.wait_for(reader.read(100), 5)
        except ConnectionResetError:  # closed unread: the kernel resets rather than ends
            results[name] = b""
        writer.close()
        server.close()
        assert forwarder.refused == (1 if name == "refused" else 0)
    inner.close()
    assert results == {"allowed": b"ping", "refused": b""}
    with pytest.raises(ValueError):
        parse_allowed([""])


# The site: namespaces on a bridge.
def call(url: str, path: str, token: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def answer(url: str, token: str) -> str:
    return str(call(url, "/v1/chat/completions", token, CHAT)["choices"][0]["message"]["content"])


def devices(url: str, token: str) -> list[str]:
    [model] = [m for m in call(url, "/api/ps", token)["models"] if m["name"].startswith("smol")]
    return list(model["devices"])


class Worker:
    def __init__(self, site: netns.Site, index: int, allow: str, log: Path) -> None:
        self.log = log.open("wb")
        self.path = log
        self.endpoint = f"{site.address(index)}:50052"
        argv = [*CLI, "rpc-worker", "--host", site.address(index), "--port", "50052"]
        self.proc = subprocess.Popen(
            site.command(index, [*argv, "--allow", allow, "--threads", "2"]),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while b"lending this box" not in log.read_bytes():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.output()
            time.sleep(0.2)

    def output(self) -> str:
        return self.path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def head(site: netns.Site, index: int, home: Path, workers: str) -> tuple[LiveBox, str]:
    token = admin_token(home)
    box = LiveBox(
        home,
        plugins="llama",
        address=site.address(index),
        prefix=tuple(site.command(index, [])),
        env={"APPLIANCE_RPC_WORKERS": workers, "APPLIANCE_PARALLEL": "1"},
    )
    return box.start(), token


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(not rpc.available(), reason="this llama.cpp build has no RPC backend")
@pytest.mark.skipif(netns.skip_reason() is not None, reason=str(netns.skip_reason()))
def test_a_model_split_over_two_boxes_answers_as_one_box_does(tmp_path: Path) -> None:
    alone_token = admin_token(tmp_path / "alone")
    with LiveBox(tmp_path / "alone", plugins="llama", env={"APPLIANCE_PARALLEL": "1"}) as alone:
        expected = answer(alone.url, alone_token)
        assert devices(alone.url, alone_token) == ["cpu"]
    with netns.site(3) as site:
        worker = Worker(site, 1, site.address(0), tmp_path / "worker.log")
        boxes: list[LiveBox] = []
        try:
            a, a_token = head(site, 0, tmp_path / "a", worker.endpoint)
            boxes.append(a)
            reasons = " ".join(call(a.url, "/appliance/hardware", a_token)["choice"]["reasons"])
            assert f"Pooled with rpc:{worker.endpoint}" in reasons
            assert answer(a.url, a_token) == expected
            assert devices(a.url, a_token) == ["cpu", f"rpc:{worker.endpoint}"]
            assert f"{site.address(0)} connected" in worker.output()

            c, c_token = head(site, 2, tmp_path / "c", worker.endpoint)
            boxes.append(c)
            reasons = " ".join(call(c.url, "/appliance/hardware", c_token)["choice"]["reasons"])
            assert f"rpc:{worker.endpoint}: RPC worker {worker.endpoint} cannot be used" in reasons
            assert answer(c.url, c_token) == expected
            assert devices(c.url, c_token) == ["cpu"]
            assert f"refused {site.address(2)}" in worker.output()
            assert f"{site.address(2)} connected" not in worker.output()
        finally:
            for box in boxes:
                box.kill()
            worker.stop()
