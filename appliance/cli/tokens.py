"""``appliance tokens create|list|revoke``."""

from __future__ import annotations

import time
from pathlib import Path

import click

from appliance.auth import ROLES, active_token_count, create_token, list_tokens, revoke_token
from appliance.cli.common import (
    echo_json,
    echo_table,
    home_option,
    opened,
    settings_from,
    show_token,
    token_to_option,
)
from appliance.core import Event


@click.group()
def tokens() -> None:
    """Manage bearer tokens (stored hashed; a new token is shown once)."""


@tokens.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", default="", help="A label, e.g. the person or tool using it.")
@click.option(
    "--if-none",
    is_flag=True,
    help="Only when no active token of this role exists (the image's first boot).",
)
@token_to_option
@home_option
def create(role: str, name: str, if_none: bool, token_to: Path | None, home: Path | None) -> None:
    """Create a token and print it once."""
    with opened(settings_from(home=home)) as appliance:
        if if_none and appliance.db.read_sync(lambda db: active_token_count(db, role)):
            click.echo(f"an active {role} token exists; none created")
            return
        token, row = appliance.db.write_sync(lambda db: create_token(db, role, name, "cli"))
        appliance.track(
            Event("token.created", resource=row["id"], address="cli", detail={"role": role})
        )
    show_token(
        f"Created {role} token {row['id']} ({row['name']}). It is shown only once:",
        token,
        token_to,
    )


@tokens.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@click.option("--json", "as_json", is_flag=True)
@home_option
def list_(include_revoked: bool, as_json: bool, home: Path | None) -> None:
    """List tokens (never their values)."""
    with opened(settings_from(home=home)) as appliance:
        rows = appliance.db.read_sync(lambda db: list_tokens(db, include_revoked))
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        for key in ("created_at", "last_used_at", "revoked_at"):
            if row.get(key):
                row[key] = time.strftime("%Y-%m-%d %H:%M", time.localtime(row[key]))
    echo_table(rows, ["id", "role", "name", "prefix", "created_at", "last_used_at", "revoked_at"])


@tokens.command("revoke")
@click.argument("token_id")
@home_option
def revoke(token_id: str, home: Path | None) -> None:
    """Revoke a token by its id (see `appliance tokens list`)."""
    with opened(settings_from(home=home)) as appliance:
        row = appliance.db.write_sync(lambda db: revoke_token(db, token_id))
        appliance.track(Event("token.revoked", resource=token_id, address="cli"))
    click.echo(f"Revoked {row['role']} token {token_id} ({row['name']}).")
