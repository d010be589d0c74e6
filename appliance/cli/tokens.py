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
from appliance.errors import ApplianceError
from appliance.quotas import TokenLimits, parse_expiry


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
@click.option("--models", default=None, help="Only these models (a comma list).")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Requests a minute.")
@click.option(
    "--tokens-per-day", type=click.IntRange(min=1), default=None, help="Tokens a day (UTC)."
)
@click.option("--expires", default=None, help="Expiry: 30d, 12h, 2w or a date (2027-01-31).")
@token_to_option
@home_option
def create(
    role: str,
    name: str,
    if_none: bool,
    models: str | None,
    rpm: int | None,
    tokens_per_day: int | None,
    expires: str | None,
    token_to: Path | None,
    home: Path | None,
) -> None:
    """Create a token and print it once, optionally with limits."""
    try:
        limits = TokenLimits(
            models=tuple(m.strip() for m in models.split(",") if m.strip()) if models else None,
            rpm=rpm,
            tokens_per_day=tokens_per_day,
            expires_at=parse_expiry(expires) if expires else None,
        )
    except ApplianceError as exc:
        raise click.BadParameter(exc.message) from None
    with opened(settings_from(home=home)) as appliance:
        if if_none and appliance.db.read_sync(lambda db: active_token_count(db, role)):
            click.echo(f"an active {role} token exists; none created")
            return
        token, row = appliance.db.write_sync(lambda db: create_token(db, role, name, "cli", limits))
        detail = {"role": role, **limits.columns()}
        appliance.track(Event("token.created", resource=row["id"], address="cli", detail=detail))
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
        for key in ("created_at", "last_used_at", "revoked_at", "expires_at"):
            if row.get(key):
                row[key] = time.strftime("%Y-%m-%d %H:%M", time.localtime(row[key]))
        row["models"] = ",".join(row["models"]) if row.get("models") is not None else "all"
    columns = ["id", "role", "name", "prefix", "created_at", "last_used_at", "expires_at"]
    echo_table(rows, [*columns, "models", "rpm", "tokens_per_day", "revoked_at"])


@tokens.command("revoke")
@click.argument("token_id")
@home_option
def revoke(token_id: str, home: Path | None) -> None:
    """Revoke a token by its id (see `appliance tokens list`)."""
    with opened(settings_from(home=home)) as appliance:
        row = appliance.db.write_sync(lambda db: revoke_token(db, token_id))
        appliance.track(Event("token.revoked", resource=token_id, address="cli"))
    click.echo(f"Revoked {row['role']} token {token_id} ({row['name']}).")
