"""The index in the box's SQLite: files, chunks (FTS5 for BM25) and float32 vectors.

Vectors are scanned with numpy: at office sizes a brute-force scan takes milliseconds and needs
no SQLite extension (this Python cannot load one without pysqlite3).
"""

from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from appliance import DocumentLoader, fts_quote, migration, sha256_file
from appliance_rag.chunking import Chunk, chunk_sections

RRF_K = 60
CANDIDATES = 50


@migration("create_rag_tables")
def create_tables(db: sqlite_utils.Database) -> None:
    db.table("rag_collections").create(
        {
            "name": str,
            "roots": str,
            "globs": str,
            "created_at": float,
            "status": str,
            "progress": str,
        },
        pk="name",
    )
    db.table("rag_files").create(
        {
            "id": int,
            "collection": str,
            "path": str,
            "size": int,
            "mtime": float,
            "sha256": str,
            "chunks": int,
            "error": str,
            "indexed_at": float,
        },
        pk="id",
    )
    db.table("rag_files").create_index(["collection", "path"], unique=True)
    db.table("rag_chunks").create(
        {
            "id": int,
            "collection": str,
            "file_id": int,
            "path": str,
            "title": str,
            "location": str,
            "text": str,
            "vector": bytes,
        },
        pk="id",
    )
    db.table("rag_chunks").create_index(["collection"])
    db.table("rag_chunks").create_index(["file_id"])
    db.table("rag_chunks").enable_fts(["text", "title"], create_triggers=True, tokenize="porter")


def confined(root: Path, path: Path) -> bool:
    """True when ``path``, with every symlink resolved, lies inside ``root``."""
    try:
        return path.resolve(strict=True).is_relative_to(root.resolve(strict=True))
    except OSError:
        return False


@dataclass
class ScanResult:
    files: list[Path] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def scan(roots: list[Path], globs: list[str], suffixes: set[str]) -> ScanResult:
    result = ScanResult()
    for root in roots:
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*"))
        base = root.parent if root.is_file() else root
        for path in candidates:
            if path.is_dir() or path.name.startswith("."):
                continue
            if globs and not any(fnmatch.fnmatch(path.name, g) for g in globs):
                continue
            if path.suffix.lower() not in suffixes:
                continue
            if not confined(base, path):
                result.refused.append((str(path), "outside the collection's folder (symlink)"))
                continue
            result.files.append(path)
    return result


def changed_files(
    db: sqlite_utils.Database, collection: str, files: list[Path]
) -> tuple[list[Path], list[int]]:
    """Files whose size, mtime or hash changed (or are new), and ids of files that vanished."""
    known = {
        row["path"]: row for row in db.table("rag_files").rows_where("collection = ?", [collection])
    }
    changed = []
    for path in files:
        row = known.pop(str(path), None)
        st = path.stat()
        if row and row["size"] == st.st_size and row["mtime"] == st.st_mtime and not row["error"]:
            continue
        if row and row["size"] == st.st_size and row["sha256"] == sha256_file(path):
            db.table("rag_files").update(row["id"], {"mtime": st.st_mtime})
            continue
        changed.append(path)
    return changed, [row["id"] for row in known.values()]


def load_file(path: Path, loaders: dict[str, DocumentLoader]) -> list[Chunk]:
    loader = loaders[path.suffix.lower()]
    return chunk_sections(loader.load(path))


def store_file(
    db: sqlite_utils.Database,
    collection: str,
    path: Path,
    chunks: list[Chunk],
    vectors: np.ndarray | None,
    error: str = "",
) -> None:
    st = path.stat()
    files = db.table("rag_files")
    existing = list(files.rows_where("collection = ? and path = ?", [collection, str(path)]))
    if existing:
        file_id = existing[0]["id"]
        db.execute("delete from rag_chunks where file_id = ?", [file_id])
    row = {
        "collection": collection,
        "path": str(path),
        "size": st.st_size,
        "mtime": st.st_mtime,
        "sha256": sha256_file(path),
        "chunks": len(chunks),
        "error": error,
        "indexed_at": time.time(),
    }
    if existing:
        files.update(file_id, row)
    else:
        file_id = files.insert(row).last_pk
    db.table("rag_chunks").insert_all(
        {
            "collection": collection,
            "file_id": file_id,
            "path": str(path),
            "title": c.title,
            "location": json.dumps(c.location),
            "text": c.text,
            "vector": vectors[i].astype(np.float32).tobytes() if vectors is not None else b"",
        }
        for i, c in enumerate(chunks)
    )


def forget_files(db: sqlite_utils.Database, file_ids: list[int]) -> None:
    for file_id in file_ids:
        db.execute("delete from rag_chunks where file_id = ?", [file_id])
        db.execute("delete from rag_files where id = ?", [file_id])


def bm25(db: sqlite_utils.Database, collection: str, query: str, limit: int) -> list[int]:
    sql = (
        "select rag_chunks.id from rag_chunks join rag_chunks_fts "
        "on rag_chunks_fts.rowid = rag_chunks.id where rag_chunks_fts match ? "
        "and rag_chunks.collection = ? order by bm25(rag_chunks_fts) limit ?"
    )
    words = " OR ".join(fts_quote(w) for w in query.split() if w.strip())
    if not words:
        return []
    return [row[0] for row in db.execute(sql, [words, collection, limit]).fetchall()]


def vector_search(
    db: sqlite_utils.Database, collection: str, query_vector: np.ndarray, limit: int
) -> list[int]:
    rows = db.execute(
        "select id, vector from rag_chunks where collection = ? and length(vector) > 0",
        [collection],
    ).fetchall()
    if not rows:
        return []
    ids = np.array([r[0] for r in rows])
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    scores = matrix @ query_vector.astype(np.float32)
    order = np.argsort(-scores)[:limit]
    return [int(ids[i]) for i in order]


def fuse(*rankings: list[int], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the rankings."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, 1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def chunks_by_id(db: sqlite_utils.Database, ids: list[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    marks = ",".join("?" for _ in ids)
    cursor = db.execute(
        f"select id, path, title, location, text from rag_chunks where id in ({marks})", ids
    )
    return {
        row[0]: {
            "id": row[0],
            "path": row[1],
            "title": row[2],
            "location": json.loads(row[3] or "{}"),
            "text": row[4],
        }
        for row in cursor.fetchall()
    }
