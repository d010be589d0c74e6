"""One record of a transcription, however it ran: a translation run as a background job is
stored as a translation (it used to be stored as "transcribe")."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from appliance import (
    ModelInfo,
    Segment,
    Transcriber,
    Transcription,
    TranscriptionRequest,
    hookimpl,
)
from appliance.keys import APPLIANCE
from tests.fixtures import ClientFactory


class TaskEcho(Transcriber):
    """Says which task it was asked for, so the record can be checked against the request."""

    info = ModelInfo(name="task-echo", family="test", parameters="0", context_length=0)

    def transcribe(self, request: TranscriptionRequest, cancel: threading.Event) -> Transcription:
        task = "translated" if request.translate else "transcribed"
        duration = len(request.audio) / 4 / 16000
        return Transcription(task, "en", duration, [Segment(0.0, duration, task)])


class TaskEchoPlugin:
    @hookimpl
    def register_transcribers(self, register: Any) -> None:
        register(TaskEcho())


async def test_jobs_and_direct_runs_record_the_task_they_ran(make_client: ClientFactory) -> None:
    client = await make_client(extra_plugins=(("task-echo", TaskEchoPlugin()),))
    appliance = client.app[APPLIANCE]
    samples = np.zeros(16000, dtype=np.float32)
    for translate in (True, False):
        job = await appliance.jobs.submit(
            "local", "task-echo", samples, TranscriptionRequest(b"", translate=translate), "a.wav"
        )
        for _ in range(100):
            status = await (await client.get(f"/appliance/jobs/{job['id']}")).json()
            if status["status"] == "done":
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "done", status
    rows = appliance.db.read_sync(
        lambda db: list(db["transcriptions"].rows_where(order_by="created_at"))
    )
    assert [(r["task"], r["text"]) for r in rows] == [
        ("translate", "translated"),
        ("transcribe", "transcribed"),
    ]
    assert all(r["filename"] == "a.wav" and r["duration_s"] == 1.0 for r in rows)
