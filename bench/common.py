"""Helpers for benchmarks: a real server on loopback in this process, and medians."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from appliance.app import create_app
from appliance.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO / ".cache" / "models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serve(home: Path, **overrides: Any) -> AsyncIterator[str]:
    """Serve the appliance on a free loopback port; yield its base URL."""
    settings = load_settings(
        {"home": home, "models_dir": MODELS_DIR, "n_threads": 2, "mdns": False, **overrides},
        environ={},
    )
    runner = web.AppRunner(create_app(settings), handler_cancellation=True, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_process(
    home: Path,
    plugins: str,
    extra_env: dict[str, str] | None = None,
    pid_out: list[int] | None = None,
) -> AsyncIterator[str]:
    """Run `appliance serve` in its own process (as clients see it); yield its base URL (and put
    its pid in ``pid_out``, for memory readings)."""
    port = free_port()
    env = {
        **os.environ,
        "APPLIANCE_LOAD_PLUGINS": plugins,
        "APPLIANCE_MDNS": "false",
        "APPLIANCE_MODELS_DIR": str(MODELS_DIR),
        "APPLIANCE_N_THREADS": "2",
        "APPLIANCE_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "appliance",
        "serve",
        "--port",
        str(port),
        "--home",
        str(home),
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    if pid_out is not None:
        pid_out.append(proc.pid)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(url + "/appliance/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        await proc.wait()


def median(values: list[float]) -> float:
    return statistics.median(values)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
