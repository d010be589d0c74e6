"""Collections: ingestion in the background (incremental, resumable), and hybrid retrieval."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from appliance import (
    Appliance,
    BadRequest,
    Conflict,
    ContextChunk,
    DocumentLoader,
    Forbidden,
    NotFound,
    Retriever,
)
from appliance_rag import index

log = logging.getLogger(__name__)
EMBED_BATCH = 32
UPLOADS = "rag-uploads"


class Collections(Retriever):
    def __init__(self, appliance: Appliance, loaders: list[DocumentLoader]) -> None:
        self.appliance = appliance
        self.loaders = {s: loader for loader in loaders for s in loader.suffixes}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.progress: dict[str, dict[str, Any]] = {}

    def _embedder(self) -> Any:
        name = self.appliance.default_model("embed")
        if name is None:
            raise BadRequest("no embedding model is installed; RAG needs one")
        return self.appliance.registry.embedders.get(name)

    async def embed(self, texts: list[str]) -> np.ndarray:
        embedder = self._embedder()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            result = await self.appliance.scheduler.embed(embedder, batch)
            vectors.extend(result.vectors)
        return np.array(vectors, dtype=np.float32)

    def _check_allowed(self, root: Path) -> None:
        """A root (symlinks resolved) must lie under ``rag_roots`` and apart from the box's home."""
        settings = self.appliance.settings
        real = root.resolve()
        home = settings.home.resolve()
        if real.is_relative_to(home / UPLOADS):
            return  # files uploaded over the API for a collection
        allowed = [r.resolve() for r in settings.rag_roots]
        if real == home or real.is_relative_to(home) or home.is_relative_to(real):
            raise Forbidden(f"{root}: the box's own files cannot be a collection", param="paths")
        if not any(real == r or real.is_relative_to(r) for r in allowed):
            listed = ", ".join(str(r) for r in settings.rag_roots) or "(none)"
            raise Forbidden(
                f"{root} resolves to {real}, outside the folders IT allows for collections "
                f"(rag_roots: {listed})",
                param="paths",
            )

    async def create(self, name: str, roots: list[Path], globs: list[str]) -> dict[str, Any]:
        if not roots:
            raise BadRequest("give at least one folder or file", param="paths")
        for root in roots:
            if not root.is_absolute() or ".." in root.parts:
                raise BadRequest(f"{root}: give an absolute path without '..'", param="paths")
            if not root.exists():
                raise BadRequest(f"{root} does not exist (is the share mounted?)", param="paths")
            self._check_allowed(root)
        exists = await self.appliance.db.read(
            lambda db: bool(list(db.table("rag_collections").rows_where("name = ?", [name])))
        )
        if exists:
            raise Conflict(f"collection {name!r} already exists", param="name")
        row = {
            "name": name,
            "roots": json.dumps([str(r) for r in roots]),
            "globs": json.dumps(globs),
            "created_at": time.time(),
            "status": "queued",
            "progress": "{}",
        }
        await self.appliance.db.write(lambda db: db.table("rag_collections").insert(row))
        self.start(name)
        return row

    async def get(self, name: str) -> dict[str, Any]:
        rows = await self.appliance.db.read(
            lambda db: list(db.table("rag_collections").rows_where("name = ?", [name]))
        )
        if not rows:
            raise NotFound(f"no collection named {name!r}")
        row = rows[0]
        errors = await self.appliance.db.read(
            lambda db: [
                {"path": r["path"], "error": r["error"]}
                for r in db.table("rag_files").rows_where("collection = ? and error != ''", [name])
            ]
        )
        counts = await self.appliance.db.read(
            lambda db: db.execute(
                "select count(*), coalesce(sum(chunks), 0) from rag_files where collection = ?",
                [name],
            ).fetchone()
        )
        return {
            "name": name,
            "roots": json.loads(row["roots"]),
            "globs": json.loads(row["globs"]),
            "status": row["status"],
            "files": counts[0],
            "chunks": counts[1],
            "progress": self.progress.get(name) or json.loads(row["progress"] or "{}"),
            "errors": errors,
        }

    async def names(self) -> list[str]:
        return await self.appliance.db.read(
            lambda db: [r["name"] for r in db.table("rag_collections").rows]
        )

    async def remove(self, name: str) -> None:
        await self.get(name)
        task = self.tasks.pop(name, None)
        if task:
            task.cancel()

        def drop(db: Any) -> None:
            db.execute("delete from rag_chunks where collection = ?", [name])
            db.execute("delete from rag_files where collection = ?", [name])
            db.execute("delete from rag_collections where name = ?", [name])

        await self.appliance.db.write(drop)

    def start(self, name: str) -> None:
        if name in self.tasks and not self.tasks[name].done():
            return
        self.tasks[name] = asyncio.create_task(self.ingest(name))

    async def _set(self, name: str, **values: Any) -> None:
        await self.appliance.db.write(lambda db: db.table("rag_collections").update(name, values))

    async def ingest(self, name: str) -> None:
        """Re-read changed files, drop deleted ones; progress is kept so a restart resumes."""
        db = self.appliance.db
        rows = await db.read(
            lambda d: list(d.table("rag_collections").rows_where("name = ?", [name]))
        )
        if not rows:
            return
        roots = [Path(p) for p in json.loads(rows[0]["roots"])]
        globs = json.loads(rows[0]["globs"])
        await self._set(name, status="indexing")
        started = time.monotonic()
        found = await asyncio.to_thread(index.scan, roots, globs, set(self.loaders))
        changed, gone = await db.read(lambda d: index.changed_files(d, name, found.files))
        await db.write(lambda d: index.forget_files(d, gone))
        state = {
            "files_total": len(changed),
            "files_done": 0,
            "chunks": 0,
            "errors": 0,
            "refused": found.refused,
            "rate_files_per_s": 0.0,
        }
        self.progress[name] = state
        for path in changed:
            try:
                chunks = await asyncio.to_thread(index.load_file, path, self.loaders)
                vectors = (
                    await self.embed([f"{c.title}\n{c.text}" for c in chunks]) if chunks else None
                )
                await db.write(
                    lambda d, p=path, c=chunks, v=vectors: index.store_file(d, name, p, c, v)
                )
                state["chunks"] += len(chunks)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad file is reported, never aborts the run
                state["errors"] += 1
                reason = str(exc) or type(exc).__name__
                await db.write(
                    lambda d, p=path, r=reason: index.store_file(d, name, p, [], None, r)
                )
            state["files_done"] += 1
            state["rate_files_per_s"] = round(state["files_done"] / (time.monotonic() - started), 2)
        await self._set(name, status="ready", progress=json.dumps(state))

    async def search(self, name: str, query: str, top_k: int = 5) -> list[dict[str, Any]]:
        await self.get(name)
        if not query.strip():
            raise BadRequest("'query' must not be empty", param="query")
        vector = (await self.embed([query]))[0]
        db = self.appliance.db
        lexical = await db.read(lambda d: index.bm25(d, name, query, index.CANDIDATES))
        semantic = await db.read(lambda d: index.vector_search(d, name, vector, index.CANDIDATES))
        fused = index.fuse(lexical, semantic)[:top_k]
        rows = await db.read(lambda d: index.chunks_by_id(d, [i for i, _ in fused]))
        return [{**rows[i], "score": round(score, 5)} for i, score in fused if i in rows]

    async def retrieve(self, collection: str, query: str, top_k: int) -> list[ContextChunk]:
        return [
            ContextChunk(
                id=str(hit["id"]),
                text=hit["text"],
                source=hit["path"],
                score=hit["score"],
                location=hit["location"],
            )
            for hit in await self.search(collection, query, top_k)
        ]
