"""``appliance provision validate|apply PATH``."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli.common import home_option, settings_from, show_token, token_to_option
from appliance.errors import ApplianceError
from appliance.provisioning.apply import apply, validate


@click.group()
def provision() -> None:
    """First-boot provisioning from a config stick (provisioning.toml)."""


@provision.command("validate")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@home_option
def validate_(path: Path, home: Path | None) -> None:
    """Check the file, the settings and every model and wheel hash; change nothing."""
    settings = settings_from(home=home)
    try:
        plan = validate(path, settings.home)
    except ApplianceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(
        f"{path} is valid: instance {plan.config.instance_id}, host "
        f"{plan.config.hostname}, {len(plan.model_files)} model(s), "
        f"{len(plan.wheels)} plugin wheel(s)"
    )


@provision.command("apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--system-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Where /etc/hostname and timezone go.",
)
@token_to_option
@home_option
def apply_(path: Path, system_root: Path, token_to: Path | None, home: Path | None) -> None:
    """Validate everything, then apply it all or nothing (once per instance id)."""
    settings = settings_from(home=home)
    try:
        result = apply(path, settings.home, system_root)
    except ApplianceError as exc:
        raise click.ClickException(f"{exc.message}; nothing was changed") from None
    for message in result.messages:
        click.echo(message)
    if result.token:
        show_token(
            "The admin token (shown only this once; only its hash is stored):",
            result.token,
            token_to,
        )
