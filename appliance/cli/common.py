"""Shared CLI helpers: settings from flags, an opened appliance, and output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from appliance.core import Appliance
from appliance.errors import ApplianceError
from appliance.plugin_admin import load_for
from appliance.settings import Settings, load_settings

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Home directory (default: $APPLIANCE_HOME or ~/.local/share/appliance).",
)

models_dir_option = click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model store folder (default: <home>/models).",
)

token_to_option = click.option(
    "--token-to",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Show the new token here (the image uses /dev/console) instead of on stdout, so it "
    "never reaches a log.",
)


def show_token(heading: str, token: str, to: Path | None) -> None:
    """Print a new token once: on stdout, or only on ``to`` with a note on stdout."""
    if to is None:
        click.echo(heading)
        click.echo(token)
        return
    with to.open("a") as out:
        out.write(f"{heading}\n{token}\n")
    click.echo(f"{heading.rstrip(':')} on {to}")


def settings_from(**overrides: Any) -> Settings:
    try:
        return load_settings(overrides)
    except ApplianceError as exc:
        raise click.ClickException(exc.message) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@contextmanager
def opened(settings: Settings | None = None, with_models: bool = False) -> Iterator[Appliance]:
    """The appliance with its database open and migrated, for commands that work offline
    (plugins' commands too). ``with_models`` also detects the hardware and registers models."""
    settings = settings or settings_from()
    appliance = Appliance(settings, load_for(settings))
    try:
        if with_models:
            appliance.detect()
            appliance.register_models()
        appliance.open()
        yield appliance
    except ApplianceError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        appliance.close()


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def echo_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max([len(c), *(len(str(r.get(c) or "")) for r in rows)]) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(str(row.get(c) or "").ljust(widths[c]) for c in columns))
