"""Transcription through the OpenAI audio API on real speech (LibriVox clips shipped in the
pocketsphinx sdist), checked for accuracy, formats, odd inputs and history."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import aiohttp
import jiwer
import numpy as np
import pytest
import soundfile
import soxr
from aiohttp.test_utils import TestClient
from openai import AsyncOpenAI

from appliance.app import create_app
from appliance.keys import APPLIANCE
from tests.fixtures import make_settings
from tests.openapi import validate_openai

pytestmark = pytest.mark.model
REPO = Path(__file__).resolve().parents[3]
CACHE = REPO / ".cache" / "librivox"


def librivox() -> list[tuple[Path, str]]:
    """The five clips with their reference transcripts (fetched once from PyPI's sdist)."""
    if not list(CACHE.glob("*.wav")):
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                "pocketsphinx",  # its build tools come as wheels (from source: minutes)
                "-d",
                str(CACHE),
                "pocketsphinx==5.1.1",
            ],
            check=True,
        )
        with tarfile.open(next(CACHE.glob("pocketsphinx-*.tar.gz"))) as tar:
            for member in tar.getmembers():
                if "/test/data/librivox/" in member.name and member.name.endswith((".wav", ".txt")):
                    member.name = Path(member.name).name
                    tar.extract(member, CACHE)
    return [
        (wav, wav.with_suffix(".txt").read_text().strip()) for wav in sorted(CACHE.glob("*.wav"))
    ]


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split())


@pytest.fixture
async def client(aiohttp_client: Any, home: Path) -> TestClient:  # type: ignore[type-arg]
    settings = make_settings(home, load_plugins=("whisper",), models_dir=REPO / ".cache" / "models")
    return await aiohttp_client(create_app(settings))


async def post_audio(
    client: TestClient,
    data: bytes,
    filename: str = "clip.wav",  # type: ignore[type-arg]
    **fields: str,
) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename)
    form.add_field("model", fields.pop("model", "whisper-1"))
    for key, value in fields.items():
        form.add_field(key, value)
    return await client.post("/v1/audio/transcriptions", data=form)


async def test_word_error_rate_through_the_api_matches_direct_whisper(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    from pywhispercpp.model import Model

    clips = librivox()
    refs, api, direct = [], [], []
    path = client.app[APPLIANCE].store.path_for(*_tiny(client))
    model = Model(str(path), n_threads=2, print_realtime=False, print_progress=False)
    for wav, reference in clips:
        refs.append(normalize(reference))
        body = await (await post_audio(client, wav.read_bytes())).json()
        api.append(normalize(body["text"]))
        direct.append(normalize(" ".join(s.text for s in model.transcribe(str(wav)))))
    api_wer, direct_wer = jiwer.wer(refs, api), jiwer.wer(refs, direct)
    assert api_wer <= 0.15, (api_wer, api)
    assert api_wer <= direct_wer + 0.01


def _tiny(client: TestClient) -> tuple[Any, Any]:  # type: ignore[type-arg]
    catalog = client.app[APPLIANCE].catalog
    model = catalog.get("whisper:tiny.en")
    return model, model.quant()


def _times(text: str, sep: str) -> list[tuple[float, float]]:
    stamp = rf"(\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d)"
    pattern = f"{stamp} --> {stamp}"
    out = []
    for m in re.finditer(pattern, text):
        g = [int(x) for x in m.groups()]
        out.append(
            (
                g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000,
                g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000,
            )
        )
    return out


async def test_every_response_format(client: TestClient) -> None:  # type: ignore[type-arg]
    wav = librivox()[0][0].read_bytes()
    plain = await post_audio(client, wav, response_format="json")
    validate_openai("CreateTranscriptionResponseJson", await plain.json())
    text = await (await post_audio(client, wav, response_format="text")).text()
    assert "Dashwood" in text
    for fmt, sep in (("srt", ","), ("vtt", ".")):
        body = await (await post_audio(client, wav, response_format=fmt)).text()
        if fmt == "vtt":
            assert body.startswith("WEBVTT")
        times = _times(body, sep)
        assert times and all(a < b for a, b in times)
        assert all(times[i][1] <= times[i + 1][0] + 0.01 for i in range(len(times) - 1))
    verbose = await (
        await post_audio(
            client, wav, response_format="verbose_json", **{"timestamp_granularities[]": "word"}
        )
    ).json()
    validate_openai("CreateTranscriptionResponseVerboseJson", verbose)
    assert verbose["duration"] > 5 and verbose["words"]
    assert verbose["language"] == "english"  # as OpenAI names it, not "en"
    starts = [w["start"] for w in verbose["words"]]
    assert starts == sorted(starts) and "Dashwood" in verbose["text"]


async def test_openai_package(client: TestClient) -> None:  # type: ignore[type-arg]
    sdk = AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="unused", max_retries=0)
    wav = librivox()[1][0]
    result = await sdk.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"))
    assert "young man" in result.text.lower()
    await sdk.close()


async def test_any_rate_channels_and_depth_and_flac(client: TestClient) -> None:  # type: ignore[type-arg]
    wav, reference = librivox()[2]
    samples, rate = soundfile.read(wav, dtype="float32")
    stereo = np.stack([soxr.resample(samples, rate, 44100)] * 2, axis=1)
    for fmt, subtype, name in (("WAV", "PCM_24", "x.wav"), ("FLAC", "PCM_16", "x.flac")):
        buf = io.BytesIO()
        soundfile.write(buf, stereo, 44100, format=fmt, subtype=subtype)
        body = await (await post_audio(client, buf.getvalue(), filename=name)).json()
        assert jiwer.wer(normalize(reference), normalize(body["text"])) <= 0.25, body


async def test_bad_audio_gets_a_clear_400_and_the_worker_survives(client: TestClient) -> None:  # type: ignore[type-arg]
    empty = await post_audio(client, b"")
    assert empty.status == 400 and "empty" in (await empty.json())["error"]["message"]
    corrupt = await post_audio(client, b"RIFF\x00\x00garbage" * 50, filename="bad.wav")
    assert corrupt.status == 400
    fmt = await post_audio(client, librivox()[0][0].read_bytes(), response_format="pdf")
    assert fmt.status == 400 and (await fmt.json())["error"]["param"] == "response_format"
    no_file = await client.post("/v1/audio/transcriptions", data=aiohttp.FormData({"model": "x"}))
    assert no_file.status == 400
    translate = aiohttp.FormData()
    translate.add_field("file", librivox()[0][0].read_bytes(), filename="a.wav")
    english_only = await client.post("/v1/audio/translations", data=translate)
    assert english_only.status == 400 and "English-only" in await english_only.text()
    good = await post_audio(client, librivox()[0][0].read_bytes())
    assert good.status == 200


async def test_chunked_upload_and_history(client: TestClient) -> None:  # type: ignore[type-arg]
    wav = librivox()[3][0].read_bytes()
    boundary = "appliance-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + wav
        + f"\r\n--{boundary}--\r\n".encode()
    )

    async def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    response = await client.post(
        "/v1/audio/transcriptions",
        data=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status == 200, await response.text()
    text = (await response.json())["text"]
    db = client.app[APPLIANCE].db
    rows = db.read_sync(lambda d: list(d.table("transcriptions").rows))
    assert rows[-1]["text"] == text and rows[-1]["model"] == "whisper:tiny.en"
    assert rows[-1]["duration_s"] > 1 and rows[-1]["processing_ms"] > 0
    word = normalize(text).split()[-1]
    found = db.read_sync(lambda d: list(d.table("transcriptions").search(word)))
    assert found and json.loads(found[0]["segments"])
    listed = await (await client.get("/appliance/transcriptions", params={"q": word})).json()
    assert [t["text"] for t in listed["transcriptions"]] == [text]
    nothing = await (await client.get("/appliance/transcriptions", params={"q": "zebra"})).json()
    assert nothing["transcriptions"] == []


async def wait_done(client: TestClient, job_id: str) -> dict[str, Any]:  # type: ignore[type-arg]
    import asyncio

    for _ in range(300):
        job = await (await client.get(f"/appliance/jobs/{job_id}")).json()
        if job["status"] in ("done", "failed"):
            return dict(job)
        await asyncio.sleep(0.1)
    raise AssertionError("the job did not finish")


async def test_async_job_and_long_audio_become_jobs(aiohttp_client: Any, home: Path) -> None:
    settings = make_settings(
        home, load_plugins=("whisper",), models_dir=REPO / ".cache" / "models", audio_sync_limit_s=3
    )
    client = await aiohttp_client(create_app(settings))
    wav, reference = librivox()[0]
    response = await post_audio(client, wav.read_bytes())  # 7 s > 3 s limit: a job
    assert response.status == 202
    job = await response.json()
    assert job["status"] in ("queued", "running") and job["url"] == f"/appliance/jobs/{job['id']}"
    done = await wait_done(client, job["id"])
    assert done["status"] == "done" and done["progress"] == 1.0
    assert jiwer.wer(normalize(reference), normalize(done["result"]["text"])) <= 0.2
    assert (await client.get("/appliance/jobs/nope")).status == 404


async def test_a_queued_job_survives_a_restart(aiohttp_client: Any, home: Path) -> None:
    from appliance.capabilities.transcribe import TranscriptionRequest

    settings = make_settings(home, load_plugins=("whisper",), models_dir=REPO / ".cache" / "models")
    first = await aiohttp_client(create_app(settings))
    appliance = first.app[APPLIANCE]
    await appliance.jobs.stop()  # nothing runs now: the job stays queued on disk
    samples, _ = soundfile.read(librivox()[1][0], dtype="float32")
    job = await appliance.jobs.submit(
        "local", "whisper:tiny.en", samples, TranscriptionRequest(audio=b""), "clip.wav"
    )
    await first.close()
    second = await aiohttp_client(create_app(settings))
    done = await wait_done(second, job["id"])
    assert done["status"] == "done" and "young man" in done["result"]["text"].lower()
