"""``appliance plugins list``."""

from __future__ import annotations

import click

from appliance.cli.common import echo_json, echo_table
from appliance.plugins import load_plugins
from appliance.settings import load_settings


@click.group()
def plugins() -> None:
    """Inspect plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--builtin", is_flag=True, help="Include the core's built-in plugins.")
def list_(as_json: bool, builtin: bool) -> None:
    """List plugins with their version, hooks and load error."""
    settings = load_settings()
    records = [
        r
        for r in load_plugins(settings.load_plugins, deny=settings.disable_plugins).as_list()
        if builtin or not r["builtin"]
    ]
    if as_json:
        echo_json(records)
        return
    rows = [
        {
            "name": r["name"],
            "version": r["version"] or "",
            "status": "loaded" if r["loaded"] else "FAILED",
            "hooks": ",".join(r["hooks"]),
            "error": r["error"] or "",
        }
        for r in records
    ]
    echo_table(rows, ["name", "version", "status", "hooks", "error"])
