"""SQLite in WAL mode behind one writer thread, with a small pool of reader threads.

Every write goes through :meth:`HistoryDB.write`, which runs on a single dedicated thread with its
own connection, so concurrent requests never contend for SQLite's write lock. Reads run on reader
threads with their own connections; WAL lets them proceed while the writer works.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import sqlite_utils

T = TypeVar("T")


def connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return sqlite_utils.Database(conn)


class HistoryDB:
    def __init__(self, path: Path, readers: int = 2) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="db-reader")
        self._local = threading.local()
        self._write_db: sqlite_utils.Database = self._writer.submit(connect, path).result()
        self._reader_dbs: list[sqlite_utils.Database] = []
        self._lock = threading.Lock()

    def _reader_db(self) -> sqlite_utils.Database:
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path)
            self._local.db = db
            with self._lock:
                self._reader_dbs.append(db)
        return db

    def _run_write(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        db = self._write_db
        with db.conn:
            return fn(db)

    def write_sync(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run ``fn`` in one transaction on the writer thread and wait (CLI, start-up)."""
        return self._writer.submit(self._run_write, fn).result()

    def read_sync(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        return self._readers.submit(lambda: fn(self._reader_db())).result()

    async def write(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._run_write, fn)

    async def read(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader_db()))

    def close(self) -> None:
        self._writer.submit(self._write_db.conn.close).result()
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for db in self._reader_dbs:
                db.conn.close()
            self._reader_dbs.clear()
