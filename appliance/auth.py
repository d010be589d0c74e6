"""Bearer tokens, stored only as SHA-256 hashes, with the roles ``user`` and ``admin``.

Tokens are 256-bit random strings, so a plain SHA-256 is enough to make the stored hash useless
to a thief; there is no password to stretch.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from appliance.errors import BadRequest, NotFound
from appliance.quotas import TokenLimits

ROLES = ("user", "admin", "metrics")
TOKEN_PREFIX = "apl_"


@dataclass(frozen=True)
class Actor:
    """Who is making a request."""

    id: str
    name: str
    role: str
    via: str = "token"
    limits: TokenLimits | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


OPEN_ACTOR = Actor(id="local", name="local (open mode)", role="admin", via="open")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    db: sqlite_utils.Database,
    role: str,
    name: str = "",
    created_by: str = "cli",
    limits: TokenLimits | None = None,
) -> tuple[str, dict[str, Any]]:
    """Create a token; return the clear token (shown once) and its stored row."""
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}, not {role!r}", param="role")
    token = new_token()
    row = {
        "id": secrets.token_hex(4),
        "name": name or f"{role} token",
        "role": role,
        "hash": hash_token(token),
        "prefix": token[: len(TOKEN_PREFIX) + 4],
        "created_at": time.time(),
        "created_by": created_by,
        "last_used_at": None,
        "revoked_at": None,
        **(limits or TokenLimits()).columns(),
    }
    db.table("tokens").insert(row, alter=False)
    return token, public_row(row)


def store_token_hash(
    db: sqlite_utils.Database, token_hash: str, role: str, name: str, created_by: str
) -> dict[str, Any]:
    """Store a token whose hash was supplied (provisioning); the clear token never touches disk."""
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}", param="role")
    if len(token_hash) != 64 or any(c not in "0123456789abcdef" for c in token_hash):
        raise BadRequest("a token hash is 64 lowercase hex characters (sha256)", param="hash")
    row = {
        "id": secrets.token_hex(4),
        "name": name,
        "role": role,
        "hash": token_hash,
        "prefix": "",
        "created_at": time.time(),
        "created_by": created_by,
        "last_used_at": None,
        "revoked_at": None,
    }
    db.table("tokens").insert(row, ignore=True)
    return public_row(row)


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    public = {k: v for k, v in row.items() if k != "hash"}
    if isinstance(public.get("models"), str):
        public["models"] = json.loads(public["models"])
    return public


def find_token(
    db: sqlite_utils.Database, token: str, now: float | None = None
) -> dict[str, Any] | None:
    """The active row of a token: not revoked and not expired."""
    rows = list(
        db.table("tokens").rows_where(
            "hash = ? and revoked_at is null and (expires_at is null or expires_at > ?)",
            [hash_token(token), time.time() if now is None else now],
        )
    )
    return rows[0] if rows else None


def actor_of_row(row: dict[str, Any], via: str = "token") -> Actor:
    """The identity a stored token stands for, with its limits."""
    return Actor(
        id=row["id"], name=row["name"], role=row["role"], via=via, limits=TokenLimits.from_row(row)
    )


def list_tokens(db: sqlite_utils.Database, include_revoked: bool = False) -> list[dict[str, Any]]:
    where = None if include_revoked else "revoked_at is null"
    return [public_row(r) for r in db.table("tokens").rows_where(where, order_by="created_at")]


def revoke_token(db: sqlite_utils.Database, token_id: str) -> dict[str, Any]:
    rows = list(db.table("tokens").rows_where("id = ? and revoked_at is null", [token_id]))
    if not rows:
        raise NotFound(f"no active token with id {token_id!r}; see `appliance tokens list`")
    db.table("tokens").update(token_id, {"revoked_at": time.time()})
    return public_row(rows[0])


def active_token_count(db: sqlite_utils.Database, role: str | None = None) -> int:
    sql = (
        "select count(*) from tokens where revoked_at is null "
        "and (expires_at is null or expires_at > ?)"
    )
    params: list[Any] = [time.time()]
    if role:
        sql += " and role = ?"
        params.append(role)
    return int(db.execute(sql, params).fetchone()[0])
