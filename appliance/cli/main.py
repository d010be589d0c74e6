"""The ``appliance`` command group; plugins add commands through ``register_commands``."""

from __future__ import annotations

import click

from appliance import __version__
from appliance.cli.detect import detect
from appliance.cli.discover import discover
from appliance.cli.models_cmd import models
from appliance.cli.plugins_cmd import plugins
from appliance.cli.provision import provision
from appliance.cli.serve import serve
from appliance.cli.tokens import tokens


class ApplianceGroup(click.Group):
    """Adds the plugins' commands the first time a command is looked up."""

    _plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if ApplianceGroup._plugins_loaded:
            return
        ApplianceGroup._plugins_loaded = True
        from appliance.errors import ApplianceError
        from appliance.plugin_admin import load_for
        from appliance.settings import load_settings

        try:
            settings = load_settings()
        except ApplianceError:
            return  # the command itself reports the settings error
        load_for(settings).call("register_commands", on_error="unregister", cli=self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None:
            self._load_plugin_commands()
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return super().list_commands(ctx)


@click.group(cls=ApplianceGroup)
@click.version_option(__version__, prog_name="appliance")
def cli() -> None:
    """Private, offline AI for your LAN."""


for command in (serve, tokens, plugins, models, discover, detect, provision):
    cli.add_command(command)


def main() -> None:
    cli()
