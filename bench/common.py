"""Helpers for benchmarks: a real server on loopback in this process, and medians."""

from __future__ import annotations

import socket
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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


def median(values: list[float]) -> float:
    return statistics.median(values)
