"""``appliance detect``: the hardware, the profile, the models that fit and why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from appliance.cli.common import echo_json, home_option, models_dir_option, settings_from
from appliance.core import Appliance
from appliance.errors import ApplianceError
from appliance.hardware.report import hardware_report
from appliance.plugin_admin import load_for

GIB = 1 << 30


@click.command()
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Read facts from this file-system root instead of / (for an image or a test).",
)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--calibrate",
    "do_calibrate",
    is_flag=True,
    help="Measure the real decode speed on the chosen model and keep it.",
)
@home_option
@models_dir_option
def detect(
    root: Path | None,
    as_json: bool,
    do_calibrate: bool,
    home: Path | None,
    models_dir: Path | None,
) -> None:
    """Show the hardware facts, the profile, the models chosen and why."""
    settings = settings_from(home=home, hardware_root=root, models_dir=models_dir)
    appliance = Appliance(settings, load_for(settings))
    notes: list[str] = []
    try:
        appliance.detect()
        if do_calibrate:
            appliance.register_models()
            result = asyncio.run(appliance.calibrate())
            notes = (
                [
                    f"Calibrated on {result.model}: {result.measured_tps} tok/s measured, "
                    f"{result.predicted_tps} predicted.",
                    *result.notes,
                ]
                if result
                else ["No chat model is served; nothing to calibrate."]
            )
        report = hardware_report(appliance)
    except ApplianceError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        appliance.close()
    if as_json:
        echo_json({**report, "notes": notes})
        return
    facts, profile, choice = report["facts"], report["profile"], report["choice"]
    click.echo(
        f"Hardware: {facts['cpu_model']} ({facts['arch']}, {facts['cpu_cores']} cores), "
        f"{facts['mem_total_bytes'] / GIB:.1f} GiB RAM, "
        f"{facts['usable_memory_bytes'] / GIB:.1f} GiB usable"
    )
    click.echo(f"Profile:  {profile['id']} - {profile['name']}")
    if choice and choice["chat"]:
        chat = choice["chat"]
        click.echo(
            f"Chat:     {chat['model']} {chat['quant']}, context {chat['ctx']}, "
            f"{chat['slots']} slot(s), ~{chat['predicted_tps']} tok/s"
        )
    if choice:
        click.echo(f"Speech:   {choice['transcribe']['model']}")
        click.echo(f"Embed:    {choice['embed']['model']}")
        click.echo(f"Resident: {choice['total_bytes'] / GIB:.1f} GiB")
        click.echo("Why:")
        for reason in choice["reasons"]:
            click.echo(f"  - {reason}")
    for item in report["missing"]:
        click.echo(f"Not on this box: {item['model']}  {item['command'] or item['note']}")
    for note in notes:
        click.echo(note)
