"""``appliance plugins list|info|install|enable|disable|remove``."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli.common import echo_json, echo_table, home_option, opened, settings_from
from appliance.core import Event
from appliance.errors import ApplianceError
from appliance.plugin_admin import install, load_for, remove, restart_service, set_enabled
from appliance.settings import Settings


@click.group()
def plugins() -> None:
    """Install, inspect, enable, disable and remove plugins (offline)."""


def _records(settings: Settings, builtin: bool) -> list[dict[str, object]]:
    return [r for r in load_for(settings).as_list() if builtin or not r["builtin"]]


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--builtin", is_flag=True, help="Include the core's built-in plugins.")
@home_option
def list_(as_json: bool, builtin: bool, home: Path | None) -> None:
    """List plugins with their version, hooks and load error."""
    records = _records(settings_from(home=home), builtin)
    if as_json:
        echo_json(records)
        return
    rows = [
        {
            "name": r["name"],
            "version": r["version"] or "",
            "status": "loaded" if r["loaded"] else "FAILED",
            "hooks": ",".join(r["hooks"]),  # type: ignore[arg-type]
            "error": r["error"] or "",
        }
        for r in records
    ]
    echo_table(rows, ["name", "version", "status", "hooks", "error"])


@plugins.command("info")
@click.argument("name")
@home_option
def info(name: str, home: Path | None) -> None:
    """Version, hooks, routes, permissions and load error of one plugin."""
    from appliance.app import create_app
    from appliance.keys import APPLIANCE

    settings = settings_from(home=home)
    app = create_app(settings)  # mounts routes, so they can be listed
    record = app[APPLIANCE].plugins.records.get(name)
    if record is None:
        raise click.ClickException(f"no plugin named {name!r} (disabled or not installed?)")
    echo_json(record.as_dict())


def _audit(settings: Settings, action: str, resource: str, detail: dict[str, object]) -> None:
    with opened(settings) as appliance:
        appliance.track(Event(action, resource=resource, address="cli", detail=detail))


@plugins.command("install")
@click.argument("target")
@click.option(
    "--find-links",
    "find_links",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A local folder of wheels (a stick or share); repeatable.",
)
@click.option(
    "--require-hashes",
    "hashes_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file pinning sha256 hashes (sha256sum or pip --hash format).",
)
@click.option("--restart", is_flag=True, help="Restart the box afterwards.")
@home_option
def install_(
    target: str,
    find_links: tuple[Path, ...],
    hashes_file: Path | None,
    restart: bool,
    home: Path | None,
) -> None:
    """Install a plugin wheel (or a name from --find-links) offline."""
    settings = settings_from(home=home)
    try:
        result = install(target, find_links, hashes_file)
    except ApplianceError as exc:
        _audit(settings, "plugin.install_refused", target, {"reason": exc.message})
        raise click.ClickException(exc.message) from None
    _audit(
        settings,
        "plugin.installed",
        target,
        {"sha256": result.sha256, "plugins": result.new_plugins},
    )
    click.echo(f"installed {target}" + (f" (sha256 {result.sha256})" if result.sha256 else ""))
    if result.new_plugins:
        click.echo("new plugins: " + ", ".join(result.new_plugins))
    click.echo(restart_service() if restart else "restart the box to load it (or pass --restart)")


def _toggle(name: str, enabled: bool, restart: bool, home: Path | None) -> None:
    settings = settings_from(home=home)
    try:
        set_enabled(settings, name, enabled)
    except ApplianceError as exc:
        raise click.ClickException(exc.message) from None
    _audit(settings, "plugin.enabled" if enabled else "plugin.disabled", name, {})
    click.echo(
        f"{'enabled' if enabled else 'disabled'} {name}; "
        + (restart_service() if restart else "restart the box to apply it")
    )


@plugins.command("enable")
@click.argument("name")
@click.option("--restart", is_flag=True)
@home_option
def enable(name: str, restart: bool, home: Path | None) -> None:
    """Load this plugin again at the next start."""
    _toggle(name, True, restart, home)


@plugins.command("disable")
@click.argument("name")
@click.option("--restart", is_flag=True)
@home_option
def disable(name: str, restart: bool, home: Path | None) -> None:
    """Stop loading this plugin (it stays installed)."""
    _toggle(name, False, restart, home)


@plugins.command("remove")
@click.argument("name")
@click.option("--restart", is_flag=True)
@home_option
def remove_(name: str, restart: bool, home: Path | None) -> None:
    """Uninstall the distribution that provides this plugin."""
    settings = settings_from(home=home)
    try:
        dist = remove(name)
    except ApplianceError as exc:
        raise click.ClickException(exc.message) from None
    _audit(settings, "plugin.removed", name, {"distribution": dist})
    click.echo(f"removed {dist}; " + (restart_service() if restart else "restart the box"))
