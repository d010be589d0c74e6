"""Named migrations per owner (the core and each plugin), applied once each, in order."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

MIGRATIONS_TABLE = "_migrations"


@dataclass(frozen=True)
class Migration:
    name: str
    apply: Callable[[sqlite_utils.Database], None]


def migration(name: str) -> Callable[[Callable[[sqlite_utils.Database], None]], Migration]:
    """Decorator: ``@migration("create_presets")`` turns a function into a :class:`Migration`."""

    def wrap(fn: Callable[[sqlite_utils.Database], None]) -> Migration:
        return Migration(name=name, apply=fn)

    return wrap


def applied(db: sqlite_utils.Database) -> set[tuple[str, str]]:
    if MIGRATIONS_TABLE not in db.table_names():
        return set()
    return {(row["owner"], row["name"]) for row in db.table(MIGRATIONS_TABLE).rows}


def apply_migrations(
    db: sqlite_utils.Database, migrations: list[tuple[str, Migration]]
) -> list[tuple[str, str]]:
    """Apply the migrations not yet recorded; return (owner, name) of those applied now."""
    if MIGRATIONS_TABLE not in db.table_names():
        db.table(MIGRATIONS_TABLE).create(
            {"owner": str, "name": str, "applied_at": float}, pk=("owner", "name")
        )
    done = applied(db)
    newly: list[tuple[str, str]] = []
    for owner, mig in migrations:
        if (owner, mig.name) in done:
            continue
        with db.conn:
            mig.apply(db)
            db.table(MIGRATIONS_TABLE).insert(
                {"owner": owner, "name": mig.name, "applied_at": time.time()}
            )
        done.add((owner, mig.name))
        newly.append((owner, mig.name))
    return newly
