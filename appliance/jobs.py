"""Background transcription jobs: queued in SQLite, run one at a time, resumed after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlite_utils

from appliance.capabilities.transcribe import Transcription, TranscriptionRequest
from appliance.history.migrations import migration
from appliance.history.transcripts import TranscriptionRecord, segments_of

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger(__name__)


@migration("create_jobs")
def create_jobs(db: sqlite_utils.Database) -> None:
    db.table("jobs").create(
        {
            "id": str,
            "owner": str,
            "kind": str,
            "model": str,
            "status": str,
            "progress": float,
            "params": str,
            "input_path": str,
            "result": str,
            "error": str,
            "created_at": float,
            "started_at": float,
            "finished_at": float,
        },
        pk="id",
    )
    db.table("jobs").create_index(["status", "created_at"])


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "job",
        "kind": row["kind"],
        "model": row["model"],
        "status": row["status"],
        "progress": round(row["progress"] or 0.0, 3),
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "result": json.loads(row["result"]) if row["result"] else None,
        "error": row["error"] or None,
    }


class JobRunner:
    def __init__(self, appliance: Appliance) -> None:
        self.appliance = appliance
        self.folder = appliance.settings.home / "jobs"
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.current: asyncio.Future[Any] | None = None

    async def submit(
        self,
        owner: str,
        model: str,
        samples: np.ndarray,
        request: TranscriptionRequest,
        filename: str,
    ) -> dict[str, Any]:
        job_id = uuid.uuid4().hex
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{job_id}.f32"
        await asyncio.to_thread(path.write_bytes, samples.astype(np.float32).tobytes())
        params = {
            "language": request.language,
            "prompt": request.prompt,
            "temperature": request.temperature,
            "translate": request.translate,
            "word_timestamps": request.word_timestamps,
            "filename": filename,
        }
        row = {
            "id": job_id,
            "owner": owner,
            "kind": "transcription",
            "model": model,
            "status": "queued",
            "progress": 0.0,
            "params": json.dumps(params),
            "input_path": str(path),
            "result": "",
            "error": "",
            "created_at": time.time(),
            "started_at": None,
            "finished_at": None,
        }
        await self.appliance.db.write(lambda db: db.table("jobs").insert(row))
        self.wake.set()
        return public(row)

    async def start(self) -> None:
        await self.appliance.db.write(
            lambda db: db.execute(
                "update jobs set status = 'queued', progress = 0 where status = 'running'"
            )
        )
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.appliance.db.write(
            lambda db: db.execute("update jobs set status = 'queued' where status = 'running'")
        )

    async def _next(self) -> dict[str, Any] | None:
        rows = await self.appliance.db.read(
            lambda db: list(
                db.table("jobs").rows_where("status = 'queued'", order_by="created_at", limit=1)
            )
        )
        return rows[0] if rows else None

    async def _loop(self) -> None:
        while True:
            job = await self._next()
            if job is None:
                self.wake.clear()
                await self.wake.wait()
                continue
            await self._run(job)

    async def _set(self, job_id: str, **values: Any) -> None:
        await self.appliance.db.write(lambda db: db.table("jobs").update(job_id, values))

    async def _run(self, job: dict[str, Any]) -> None:
        appliance = self.appliance
        params = json.loads(job["params"])
        filename = params.pop("filename", "")
        loop = asyncio.get_running_loop()

        def progress(fraction: float) -> None:
            loop.call_soon_threadsafe(
                lambda: appliance.spawn(self._set(job["id"], progress=min(fraction, 1.0)))
            )

        try:
            model = appliance.registry.transcribers.get(job["model"])
            audio = await asyncio.to_thread(Path(job["input_path"]).read_bytes)
            request = replace(TranscriptionRequest(audio=audio, **params), on_progress=progress)
            await self._set(job["id"], status="running", started_at=time.time())
            started = time.monotonic()
            result: Transcription = await appliance.scheduler.run(
                model, lambda cancel: model.transcribe(request, cancel)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("job %s failed: %s", job["id"], exc)
            await self._set(job["id"], status="failed", error=str(exc), finished_at=time.time())
            return
        body = {
            "text": result.text,
            "language": result.language,
            "duration": result.duration,
            "segments": segments_of(result),
        }
        elapsed_ms = (time.monotonic() - started) * 1000
        record = TranscriptionRecord(
            job["owner"], model.name, request, result, filename, result.duration, elapsed_ms
        )
        await appliance.db.write(record.write)
        await self._set(
            job["id"], status="done", progress=1.0, result=json.dumps(body), finished_at=time.time()
        )
        await asyncio.to_thread(Path(job["input_path"]).unlink, missing_ok=True)
