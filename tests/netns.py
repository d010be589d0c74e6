"""Network namespaces joined by a bridge, made and removed by the test that uses them.

Every address is in 10.231.N.0/24, which exists only on the test's bridge: the bridge's own
address (.254) lets the test process reach the boxes; namespace i is .(i+1). Needs root and
iproute2; :func:`skip_reason` says why not where they are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2 (ip)"
    probe = subprocess.run(["ip", "netns", "add", "ap-probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"this machine cannot make network namespaces: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "ap-probe"], check=False)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Site:
    bridge: str
    host_address: str
    namespaces: tuple[str, ...]
    addresses: tuple[str, ...]

    def address(self, index: int) -> str:
        return self.addresses[index]

    def command(self, index: int, argv: list[str]) -> list[str]:
        """``argv`` run inside namespace ``index``."""
        return ["ip", "netns", "exec", self.namespaces[index], *argv]


@contextmanager
def site(count: int) -> Iterator[Site]:
    """``count`` namespaces on one fresh bridge; all of it is removed afterwards."""
    tag = f"{os.getpid() % 100000}"
    subnet = f"10.231.{os.getpid() % 250}"
    bridge = f"apbr{tag}"
    namespaces = tuple(f"ap{tag}-{chr(ord('a') + i)}" for i in range(count))
    addresses = tuple(f"{subnet}.{i + 1}" for i in range(count))
    made: list[str] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.254/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i, namespace in enumerate(namespaces):
            _ip("netns", "add", namespace)
            made.append(namespace)
            outside, inside = f"ap{tag}{chr(ord('a') + i)}h", f"ap{tag}{chr(ord('a') + i)}n"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", namespace)
            _ip("link", "set", outside, "master", bridge, "up")
            _ip("-n", namespace, "addr", "add", f"{addresses[i]}/24", "dev", inside)
            _ip("-n", namespace, "link", "set", inside, "up", "multicast", "on")
            _ip("-n", namespace, "link", "set", "lo", "up")
        yield Site(bridge, f"{subnet}.254", namespaces, addresses)
    finally:
        for namespace in made:
            subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)
