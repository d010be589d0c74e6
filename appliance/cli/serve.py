"""``appliance serve``: run the HTTP server until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click
from aiohttp import web

from appliance.app import create_app
from appliance.cli.common import home_option, settings_from, setup_logging
from appliance.discovery.mdns import Advertiser
from appliance.errors import ApplianceError
from appliance.http.guard import ConnectionGuard, GuardedAppRunner
from appliance.keys import APPLIANCE
from appliance.settings import Settings
from appliance.tls import fingerprint, server_context

log = logging.getLogger("appliance.serve")


def make_runner(app: web.Application, settings: Settings) -> GuardedAppRunner:
    """The runner the box serves with: slow headers cut off, connections per address bounded."""
    guard = ConnectionGuard(settings.header_timeout_s, settings.max_connections_per_address)
    return GuardedAppRunner(app, guard, handler_cancellation=True, access_log=None)


async def serve_until_stopped(settings: Settings) -> None:
    app = create_app(settings)
    runner = make_runner(app, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    advertiser: Advertiser | None = None
    await runner.setup()
    try:
        tls = server_context(settings)
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=tls)
        await site.start()
        scheme = "https" if tls else "http"
        log.info(
            "serving on %s://%s:%d (home %s)", scheme, settings.host, settings.port, settings.home
        )
        if tls and settings.tls_cert:
            log.info("TLS certificate sha256 fingerprint %s", fingerprint(settings.tls_cert))
        if settings.mdns:
            advertiser = Advertiser(app[APPLIANCE], settings.host, settings.port, tls=bool(tls))
            await advertiser.start()
        await stop.wait()
        log.info("stopping")
    finally:
        if advertiser is not None:
            await advertiser.stop()
        await runner.cleanup()


@click.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 11434).")
@home_option
def serve(host: str | None, port: int | None, home: Path | None) -> None:
    """Serve the OpenAI, Ollama and appliance APIs."""
    settings = settings_from(host=host, port=port, home=home)
    setup_logging(settings.log_level)
    try:
        asyncio.run(serve_until_stopped(settings))
    except ApplianceError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc}"
        ) from None
