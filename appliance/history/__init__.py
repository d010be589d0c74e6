"""History in SQLite: conversations, messages, tokens and audit, with per-owner migrations."""

from appliance.history.db import HistoryDB
from appliance.history.migrations import Migration, migration

__all__ = ["HistoryDB", "Migration", "migration"]
