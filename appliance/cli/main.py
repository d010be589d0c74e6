"""The ``appliance`` command group; plugins add commands through ``register_commands``."""

from __future__ import annotations

import click

from appliance import __version__
from appliance.cli.detect import detect
from appliance.cli.discover import discover
from appliance.cli.models_cmd import models
from appliance.cli.plugins_cmd import plugins
from appliance.cli.serve import serve
from appliance.cli.tokens import tokens


@click.group()
@click.version_option(__version__, prog_name="appliance")
def cli() -> None:
    """Private, offline AI for your LAN."""


cli.add_command(serve)
cli.add_command(tokens)
cli.add_command(plugins)
cli.add_command(models)
cli.add_command(discover)
cli.add_command(detect)


def _plugin_commands() -> None:
    from appliance.errors import ApplianceError
    from appliance.plugin_admin import load_for
    from appliance.settings import load_settings

    try:
        settings = load_settings()
    except ApplianceError:
        return  # the command itself reports the settings error
    load_for(settings).call_each("register_commands", cli=cli)


def main() -> None:
    _plugin_commands()
    cli()
