"""Browser sessions: a cookie that stands for a token, for as long as the token is valid.

The cookie holds a random id; the box keeps only its SHA-256, with the token it stands for and a
CSRF secret the page sends back (``X-CSRF-Token``) on every request that changes something. A
session ends at sign-out, at its expiry, and as soon as its token is revoked or expires.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from appliance import migration

COOKIE = "appliance_session"
LIFETIME_S = 12 * 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@migration("create_web_sessions")
def create_sessions(db: sqlite_utils.Database) -> None:
    db.table("web_sessions").create(
        {
            "id_hash": str,
            "token_id": str,
            "csrf": str,
            "created_at": float,
            "expires_at": float,
            "ended_at": float,
        },
        pk="id_hash",
    )


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    expires_at: float


def open_session(db: sqlite_utils.Database, token_id: str, now: float | None = None) -> Session:
    now = time.time() if now is None else now
    session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(24), now + LIFETIME_S)
    db.table("web_sessions").insert(
        {
            "id_hash": _hash(session.id),
            "token_id": token_id,
            "csrf": session.csrf,
            "created_at": now,
            "expires_at": session.expires_at,
            "ended_at": None,
        }
    )
    return session


def find_session(
    db: sqlite_utils.Database, session_id: str, now: float | None = None
) -> dict[str, Any] | None:
    """The live session and its token's row: not ended, not expired, token neither revoked nor
    expired."""
    now = time.time() if now is None else now
    rows = db.execute(
        "select s.csrf, s.expires_at, t.* from web_sessions s join tokens t on t.id = s.token_id "
        "where s.id_hash = ? and s.ended_at is null and s.expires_at > ? "
        "and t.revoked_at is null and (t.expires_at is null or t.expires_at > ?)",
        [_hash(session_id), now, now],
    )
    columns = [d[0] for d in rows.description]
    found = rows.fetchone()
    return dict(zip(columns, found, strict=True)) if found else None


def end_session(db: sqlite_utils.Database, session_id: str) -> None:
    db.execute(
        "update web_sessions set ended_at = ? where id_hash = ?", [time.time(), _hash(session_id)]
    )


def csrf_ok(method: str, expected: str, sent: str | None) -> bool:
    """Requests that change something carry the session's CSRF secret; reads need not."""
    if method not in UNSAFE_METHODS:
        return True
    return bool(sent) and hmac.compare_digest(expected, sent or "")
