"""``appliance discover``: list the boxes on this network."""

from __future__ import annotations

import asyncio

import click

from appliance.cli.common import echo_json, echo_table
from appliance.discovery.browse import discover as browse


@click.command()
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds to listen.")
@click.option("--interface", "interfaces", multiple=True, help="Only this IPv4 address (repeat).")
@click.option("--json", "as_json", is_flag=True)
def discover(timeout: float, interfaces: tuple[str, ...], as_json: bool) -> None:
    """Find appliances on the LAN over mDNS and check each over HTTP."""
    boxes = asyncio.run(browse(timeout, list(interfaces) or None))
    if as_json:
        echo_json([b.as_dict() for b in boxes])
        return
    if not boxes:
        click.echo("No appliances found.")
        return
    rows = [
        {
            "name": b.name,
            "addresses": ",".join(b.addresses),
            "port": b.port,
            "version": b.version,
            "profile": b.profile,
            "auth": b.auth,
            "models": ",".join(b.models),
            "status": "ok" if b.reachable else f"UNREACHABLE {b.error}",
        }
        for b in boxes
    ]
    echo_table(
        rows, ["name", "addresses", "port", "version", "profile", "auth", "models", "status"]
    )
