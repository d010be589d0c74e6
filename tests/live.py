"""A box served by `appliance serve` in its own process, for tests that need the real server:
fuzzing, kill -9, slow clients, crowds."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_MODELS = REPO / ".cache" / "models"
CLI = [sys.executable, "-m", "appliance"]
SERVE = [*CLI, "serve"]


_UNVERIFIED = ssl._create_unverified_context()  # a test box's self-signed certificate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveBox:
    home: Path
    plugins: str = "echo"
    env: dict[str, str] | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    address: str = "127.0.0.1"
    """Where it listens (a namespace's address for the tests of a site of boxes)."""
    prefix: tuple[str, ...] = ()
    """A command it runs under, e.g. ``ip netns exec NS``."""
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}:{self.port}"

    def start(self, wait_s: float = 120) -> LiveBox:
        self.port = self.port or free_port()
        env = {
            **os.environ,
            "APPLIANCE_LOAD_PLUGINS": self.plugins,
            "APPLIANCE_MDNS": "false",
            "APPLIANCE_CALIBRATE_AT_START": "false",
            "APPLIANCE_MODELS_DIR": str(TEST_MODELS),
            "APPLIANCE_N_THREADS": "2",
            "APPLIANCE_HOST": self.address,
            **(self.env or {}),
        }
        self.log = (self.home.parent / f"box-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [*self.prefix, *SERVE, "--port", str(self.port), "--home", str(self.home)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with urllib.request.urlopen(
                    self.url + "/appliance/health", timeout=5, context=_UNVERIFIED
                ) as r:
                    if json.loads(r.read())["status"] == "ok":
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the box did not start:\n{self.output()}")
            time.sleep(0.2)

    def output(self) -> str:
        self.log.flush()
        return (self.home.parent / f"box-{self.port}.log").read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def __enter__(self) -> LiveBox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Ask a box still running to shut down (SIGTERM) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)


def admin_token(home: Path, role: str = "admin") -> str:
    """A token (admin by default) made with the CLI before the box starts (so the box requires
    tokens)."""
    made = subprocess.run(
        [*CLI, "tokens", "create", "--role", role, "--home", str(home)],
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]
