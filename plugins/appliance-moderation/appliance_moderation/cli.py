"""``appliance moderation check PATH... [--policy NAME]`` and ``moderation policy add|list``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from appliance import ApplianceError, opened
from appliance_moderation.images import SUFFIXES, read_image


@click.group("moderation")
def moderation_cli() -> None:
    """Check images against a policy, on this box."""


@moderation_cli.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--policy", default=None, help="The policy to check against (default: default).")
@click.option("--json", "as_json", is_flag=True)
def check(paths: tuple[Path, ...], policy: str | None, as_json: bool) -> None:
    """Check image files (or every image in folders) and print each verdict and why."""
    from appliance_moderation import checks_of

    files: list[Path] = []
    for path in paths:  # a file named is checked whatever its name; a folder's images by suffix
        if path.is_dir():
            files += sorted(f for f in path.rglob("*") if f.suffix.lower() in SUFFIXES)
        else:
            files.append(path)
    with opened(with_models=True) as appliance:

        async def run() -> list[dict[str, Any]]:
            checks = checks_of(appliance)
            await checks.policy(policy)
            results = []
            for file in files:
                try:
                    image, sha = read_image(file)
                except ApplianceError as exc:
                    results.append({"source": str(file), "status": "error", "error": exc.message})
                    continue
                check_id = await checks.record(image, sha, "cli", policy or "")
                results.append(await checks.run(check_id))
            appliance.scheduler.shutdown()
            return results

        try:
            results = asyncio.run(run())
        except ApplianceError as exc:
            raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for result in results:
        verdict = result.get("verdict") or result["status"]
        why = "; ".join(result.get("reasons") or []) or result.get("error") or ""
        click.echo(f"{verdict:7} {result['source']}  {why}")


@moderation_cli.group("policy")
def policy_group() -> None:
    """The policies checks are made against."""


@policy_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policy_add(file: Path) -> None:
    """Add (or replace) a policy from its TOML file."""
    from appliance_moderation import checks_of
    from appliance_moderation.policy import parse_policy_toml

    with opened() as appliance:
        try:
            policy = parse_policy_toml(file.read_text())
        except ApplianceError as exc:
            raise click.ClickException(f"{file}: {exc.message}") from None
        asyncio.run(checks_of(appliance).save_policy(policy))
    click.echo(f"policy {policy.name}: {len(policy.questions)} question(s)")


@policy_group.command("list")
def policy_list() -> None:
    from appliance_moderation import checks_of

    with opened() as appliance:
        found = asyncio.run(checks_of(appliance).policies())
    for policy in found:
        click.echo(f"{policy.name}  {len(policy.questions)} question(s)  {policy.description}")
