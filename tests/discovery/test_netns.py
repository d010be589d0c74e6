"""Two boxes and a client on a virtual LAN: network namespaces joined by a veth pair.

Two box namespaces (10.213.7.1 and .3) run `appliance serve`; the client namespace
(10.213.7.2, whose bridge joins them) runs `appliance discover --json`. Only addresses inside
the namespaces this test creates are used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]
BOX_IPS = ("10.213.7.1", "10.213.7.3")
CLIENT_IP = "10.213.7.2"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def lan() -> Iterator[tuple[list[str], str]]:
    """Two box namespaces and a client namespace whose bridge joins them (a tiny switch)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create network namespaces")
    tag = uuid.uuid4().hex[:6]
    boxes, client = [f"apl-b1-{tag}", f"apl-b2-{tag}"], f"apl-cl-{tag}"
    try:
        for ns in (*boxes, client):
            sh("ip", "netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.decode().strip()}")
    try:
        sh("ip", "-n", client, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", client, "addr", "add", f"{CLIENT_IP}/24", "dev", "br0")
        sh("ip", "-n", client, "link", "set", "br0", "up")
        sh("ip", "-n", client, "link", "set", "lo", "up")
        for i, (ns, ip) in enumerate(zip(boxes, BOX_IPS, strict=True)):
            inner, outer = f"v{i}{tag}a", f"v{i}{tag}b"
            sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "link", "set", outer, "netns", client)
            sh("ip", "-n", client, "link", "set", outer, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", inner)
            sh("ip", "-n", ns, "link", "set", inner, "up", "multicast", "on")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield boxes, client
    finally:
        for ns in (*boxes, client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def serve(ns: str, ip: str, home: Path, port: int, name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "APPLIANCE_LOAD_PLUGINS": "echo",
        "APPLIANCE_INSTANCE_NAME": name,
        "APPLIANCE_CALIBRATE_AT_START": "false",
    }
    return subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-m",
            "appliance",
            "serve",
            "--host",
            ip,
            "--port",
            str(port),
            "--home",
            str(home),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for(proc: subprocess.Popen[bytes], text: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        chunk = proc.stdout.read() or b""
        seen += chunk
        if text.encode() in seen:
            return seen.decode()
        assert proc.poll() is None, seen.decode()
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not seen in: {seen.decode()}")


def discover(ns: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-m",
            "appliance",
            "discover",
            "--interface",
            CLIENT_IP,
            "--timeout",
            "2",
            "--json",
        ],
        check=True,
        capture_output=True,
    )
    return list(json.loads(out.stdout))


def test_discovery_across_a_virtual_lan(lan: tuple[list[str], str], tmp_path: Path) -> None:
    (box_a, box_b), client_ns = lan
    first = serve(box_a, BOX_IPS[0], tmp_path / "a", 18080, "Reception")
    second = None
    try:
        log = wait_for(first, "mDNS: announced")
        # A LAN box's first admin token goes to a file only its user reads, never to the log
        # (which is the service journal on a real box).
        token_file = tmp_path / "a" / "first-admin-token"
        token = token_file.read_text().strip()
        assert token.startswith("apl_") and token not in log and "apl_" not in log
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        boxes = discover(client_ns)
        assert len(boxes) == 1
        box = boxes[0]
        assert box["name"] == "Reception" and box["addresses"] == [BOX_IPS[0]]
        assert box["port"] == 18080 and box["auth"] == "required"
        assert box["txt"]["api"] == "/v1" and box["txt"]["ollama"] == "/api"
        assert box["reachable"] and box["record"]["id"] == box["id"]
        assert box["record"]["auth"] == "required"

        second = serve(box_b, BOX_IPS[1], tmp_path / "b", 18081, "Reception")
        renamed = wait_for(second, "mDNS: announced")
        assert "renamed from 'Reception'" in renamed
        names = sorted(b["name"] for b in discover(client_ns))
        assert len(names) == 2 and names[0] == "Reception" and names[1] != "Reception"

        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0
        remaining = discover(client_ns)
        assert [b["name"] for b in remaining] == [names[1]]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
