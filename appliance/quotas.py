"""Per-token limits that IT sets when creating a token: which models it may use, requests per
minute, tokens per day. Beyond them a request gets 403 (a model it may not use) or 429 with
Retry-After, before anything runs, and the refusal is audited.

Requests per minute are counted in memory (a sliding minute); tokens per day (prompt and
completion tokens of chat and completions, input tokens of embeddings, by UTC day) are kept in
the ``token_usage`` table, so a restart does not reset them.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from appliance.errors import ApplianceError, BadRequest, Forbidden
from appliance.history.db import HistoryDB
from appliance.history.migrations import migration

MINUTE_S = 60.0
DAY_S = 86400


class LimitReached(ApplianceError):
    status = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, retry_after: int, code: str) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(max(1, retry_after))})


@dataclass(frozen=True)
class TokenLimits:
    models: tuple[str, ...] | None = None
    """The models this token may use (None: all)."""
    rpm: int | None = None
    tokens_per_day: int | None = None
    expires_at: float | None = None

    @property
    def any(self) -> bool:
        return bool(self.models is not None or self.rpm or self.tokens_per_day)

    def columns(self) -> dict[str, Any]:
        return {
            "models": json.dumps(list(self.models)) if self.models is not None else None,
            "rpm": self.rpm,
            "tokens_per_day": self.tokens_per_day,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TokenLimits:
        models = row.get("models")
        return cls(
            models=tuple(json.loads(models)) if models else None,
            rpm=row.get("rpm") or None,
            tokens_per_day=row.get("tokens_per_day") or None,
            expires_at=row.get("expires_at") or None,
        )


_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": DAY_S, "w": 7 * DAY_S}


def parse_expiry(value: str, now: float | None = None) -> float:
    """``30d``, ``12h``, ``90m``, ``2w`` from now, or a date ``2027-01-31`` (its end, UTC)."""
    now = time.time() if now is None else now
    text = value.strip().lower()
    if match := _DURATION.match(text):
        amount = int(match.group(1))
        if amount <= 0:
            raise BadRequest("an expiry must be in the future", param="expires")
        return now + amount * _UNITS[match.group(2)]
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise BadRequest(
            f"expires must look like 30d, 12h, 90m, 2w or 2027-01-31, not {value!r}",
            param="expires",
        ) from None
    end = day.timestamp() + DAY_S
    if end <= now:
        raise BadRequest("an expiry must be in the future", param="expires")
    return end


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


@migration("create_token_limits")
def create_token_limits(db: sqlite_utils.Database) -> None:
    tokens = db.table("tokens")
    tokens.add_column("expires_at", float)
    tokens.add_column("models", str)
    tokens.add_column("rpm", int)
    tokens.add_column("tokens_per_day", int)
    db.table("token_usage").create(
        {"token_id": str, "day": str, "tokens": int}, pk=("token_id", "day")
    )


class Quotas:
    def __init__(self) -> None:
        self._requests: dict[str, deque[float]] = {}
        self._spent: dict[tuple[str, str], int] = {}

    async def check(
        self, db: HistoryDB, token_id: str, limits: TokenLimits, model: str | None
    ) -> None:
        """Raise 403 or 429 if this request is beyond the token's limits; count it otherwise."""
        if limits.models is not None and model is not None and model not in limits.models:
            allowed = ", ".join(limits.models) or "none"
            raise Forbidden(
                f"this token may not use the model {model!r}; it may use: {allowed}",
                code="model_not_allowed",
            )
        now = time.time()
        if limits.tokens_per_day:
            spent = await self.spent_today(db, token_id, now)
            if spent >= limits.tokens_per_day:
                midnight = (math.floor(now / DAY_S) + 1) * DAY_S
                raise LimitReached(
                    f"this token has used its {limits.tokens_per_day} tokens for today (UTC)",
                    math.ceil(midnight - now),
                    "tokens_per_day_exceeded",
                )
        if limits.rpm:
            recent = self._requests.setdefault(token_id, deque())
            while recent and recent[0] <= now - MINUTE_S:
                recent.popleft()
            if len(recent) >= limits.rpm:
                wait = recent[len(recent) - limits.rpm] + MINUTE_S - now
                raise LimitReached(
                    f"this token may make {limits.rpm} requests a minute",
                    math.ceil(wait),
                    "requests_per_minute_exceeded",
                )
            recent.append(now)

    async def spent_today(self, db: HistoryDB, token_id: str, now: float | None = None) -> int:
        key = (token_id, utc_day(time.time() if now is None else now))
        if key not in self._spent:
            rows = await db.read(
                lambda d: list(d["token_usage"].rows_where("token_id = ? and day = ?", list(key)))
            )
            self._spent[key] = int(rows[0]["tokens"]) if rows else 0
        return self._spent[key]

    async def spend(self, db: HistoryDB, token_id: str, tokens: int) -> None:
        if tokens <= 0:
            return
        key = (token_id, utc_day(time.time()))
        total = await self.spent_today(db, token_id) + tokens
        self._spent[key] = total
        await db.write(
            lambda d: d.table("token_usage").upsert(
                {"token_id": key[0], "day": key[1], "tokens": total}, pk=("token_id", "day")
            )
        )
