"""OpenAI's audio API: /v1/audio/transcriptions and /v1/audio/translations."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from appliance.audio import RATE, decode_audio
from appliance.capabilities.transcribe import Segment, Transcription, TranscriptionRequest
from appliance.errors import BadRequest, Forbidden, NotFound
from appliance.history.conversations import fts_quote
from appliance.history.transcripts import TranscriptionRecord
from appliance.http.languages import language_name
from appliance.http.middleware import require
from appliance.http.multipart import read_form
from appliance.jobs import public
from appliance.keys import appliance_of

routes = web.RouteTableDef()
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MAX_AUDIO_S = 4 * 3600.0


async def read_audio_form(request: web.Request) -> tuple[bytes, str, dict[str, list[str]]]:
    """The uploaded file (within the body limit, chunked uploads too), its name, other fields."""
    limit = appliance_of(request).settings.max_body_bytes
    form = await read_form(request, limit, ("file",))
    if not form.files:
        raise BadRequest("'file' is required", param="file")
    upload = form.files[0]
    return upload.data, upload.filename or "audio", form.fields


def _field(fields: dict[str, list[str]], name: str, default: str = "") -> str:
    return fields.get(name, [default])[0].strip()


def _stamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: list[Segment]) -> str:
    return "".join(
        f"{i}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n{s.text.strip()}\n\n"
        for i, s in enumerate(segments, 1)
    )


def to_vtt(segments: list[Segment]) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n{s.text.strip()}\n\n" for s in segments
    )


def verbose(result: Transcription, task: str, words: bool, temperature: float) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        "language": language_name(result.language),
        "duration": round(result.duration, 3),
        "text": result.text,
        "segments": [
            {
                "id": i,
                "seek": 0,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": [],
                "temperature": temperature,
                "avg_logprob": 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": 0.0,
            }
            for i, s in enumerate(result.segments)
        ],
    }
    if words:
        body["words"] = [w for s in result.segments for w in s.words]
    return body


async def _handle(request: web.Request, translate: bool) -> web.Response:
    actor = require(request, "models.use")
    appliance = appliance_of(request)
    data, filename, fields = await read_audio_form(request)
    wanted = _field(fields, "model")
    if wanted in ("", "whisper-1"):
        wanted = _default_transcriber(request)
    model = appliance.registry.transcribers.get(wanted)
    await appliance.check_limits(actor, model.name)
    fmt = _field(fields, "response_format", "json")
    if fmt not in FORMATS:
        raise BadRequest(
            f"response_format must be one of {', '.join(FORMATS)}", param="response_format"
        )
    try:
        temperature = float(_field(fields, "temperature", "0") or 0)
    except ValueError:
        raise BadRequest("temperature must be a number", param="temperature") from None
    granularities = fields.get("timestamp_granularities[]", []) + fields.get(
        "timestamp_granularities", []
    )
    words = "word" in granularities
    samples = await asyncio.to_thread(decode_audio, data, MAX_AUDIO_S)
    work = TranscriptionRequest(
        audio=samples.tobytes(),
        language=_field(fields, "language") or None,
        prompt=_field(fields, "prompt") or None,
        temperature=temperature,
        translate=translate,
        word_timestamps=words,
    )
    duration = len(samples) / RATE
    if (
        request.query.get("async") in ("1", "true")
        or duration > appliance.settings.audio_sync_limit_s
    ):
        job = await appliance.jobs.submit(actor.id, model.name, samples, work, filename)
        job["url"] = f"/appliance/jobs/{job['id']}"
        return web.json_response(job, status=202)
    started = time.monotonic()
    result: Transcription = await appliance.scheduler.run(
        model, lambda cancel: model.transcribe(work, cancel)
    )
    elapsed_ms = (time.monotonic() - started) * 1000
    task = "translate" if translate else "transcribe"
    record = TranscriptionRecord(
        actor.id, model.name, work, result, filename, len(samples) / RATE, elapsed_ms
    )
    await appliance.db.write(record.write)
    if fmt == "text":
        return web.Response(text=result.text + "\n", content_type="text/plain")
    if fmt == "srt":
        return web.Response(text=to_srt(result.segments), content_type="application/x-subrip")
    if fmt == "vtt":
        return web.Response(text=to_vtt(result.segments), content_type="text/vtt")
    if fmt == "verbose_json":
        return web.json_response(verbose(result, task, words, temperature))
    return web.json_response({"text": result.text})


def _default_transcriber(request: web.Request) -> str:
    """OpenAI clients send model "whisper-1"; it means the box's chosen Whisper."""
    name = appliance_of(request).default_model("transcribe")
    if name is None:
        raise BadRequest("no transcription model is installed on this box", param="model")
    return name


@routes.post("/v1/audio/transcriptions")
async def transcriptions(request: web.Request) -> web.Response:
    return await _handle(request, translate=False)


@routes.post("/v1/audio/translations")
async def translations(request: web.Request) -> web.Response:
    return await _handle(request, translate=True)


@routes.get("/appliance/jobs/{id}")
async def job_status(request: web.Request) -> web.Response:
    """A background job's progress, and its result once done (owner or admin)."""
    actor = require(request, "jobs.own")
    appliance = appliance_of(request)
    job_id = request.match_info["id"]
    rows = await appliance.db.read(lambda db: list(db.table("jobs").rows_where("id = ?", [job_id])))
    if not rows:
        raise NotFound(f"job {job_id!r} not found")
    if rows[0]["owner"] != actor.id and not actor.is_admin:
        raise Forbidden("this job belongs to someone else")
    return web.json_response(public(rows[0]))


@routes.get("/appliance/transcriptions")
async def transcription_history(request: web.Request) -> web.Response:
    """Your transcriptions, newest first; ``?q=`` searches their text (admins: ``?all=1``)."""
    actor = require(request, "conversations.own")
    appliance = appliance_of(request)
    query = request.query.get("q", "").strip()
    everyone = actor.is_admin and request.query.get("all") == "1"

    def fetch(db: Any) -> list[dict[str, Any]]:
        sql = (
            "select id, owner, model, task, language, filename, duration_s, processing_ms, "
            "text, created_at from transcriptions"
        )
        where, params = [], []
        if not everyone:
            where.append("owner = ?")
            params.append(actor.id)
        if query:
            where.append(
                "rowid in (select rowid from transcriptions_fts where transcriptions_fts match ?)"
            )
            params.append(fts_quote(query))
        if where:
            sql += " where " + " and ".join(where)
        cursor = db.execute(sql + " order by created_at desc limit 100", params)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    return web.json_response({"transcriptions": await appliance.db.read(fetch)})
