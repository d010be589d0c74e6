"""Real-time factor of transcription through the HTTP API versus pywhispercpp called directly on
the same file and model, in one run (target: API / direct <= 1.05).
Run: .venv/bin/python -m bench.transcribe"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import soundfile
from pywhispercpp.model import Model

from appliance.models.catalog import load_catalog
from appliance.models.store import ModelStore
from bench.common import MODELS_DIR, median, serve_process

CLIPS = Path(__file__).resolve().parents[1] / ".cache" / "librivox"
ROUNDS = 3


async def main() -> None:
    clips = sorted(CLIPS.glob("*.wav"))
    if not clips:
        raise SystemExit("no clips in .cache/librivox: run the whisper tests once (make test)")
    audio_s = sum(soundfile.info(str(c)).duration for c in clips)
    catalog = load_catalog()
    model = catalog.get("whisper:tiny.en")
    path = ModelStore(MODELS_DIR, catalog).verified_path(model)
    direct_model = Model(str(path), n_threads=2, print_realtime=False, print_progress=False)
    with tempfile.TemporaryDirectory() as home:
        async with serve_process(Path(home), "whisper") as url, aiohttp.ClientSession() as s:

            async def via_api() -> float:
                started = time.perf_counter()
                for clip in clips:
                    form = aiohttp.FormData()
                    form.add_field("file", clip.read_bytes(), filename=clip.name)
                    form.add_field("model", "whisper:tiny.en")
                    async with s.post(url + "/v1/audio/transcriptions", data=form) as r:
                        assert r.status == 200, await r.text()
                return (time.perf_counter() - started) / audio_s

            def direct() -> float:
                started = time.perf_counter()
                for clip in clips:
                    samples, _ = soundfile.read(str(clip), dtype="float32")
                    direct_model.transcribe(samples)
                return (time.perf_counter() - started) / audio_s

            await via_api()  # load the model once
            api_rtf, direct_rtf = [], []
            for _ in range(ROUNDS):
                direct_rtf.append(direct())
                api_rtf.append(await via_api())
    a, d = median(api_rtf), median(direct_rtf)
    print(f"{len(clips)} clips, {audio_s:.1f} s of speech, whisper:tiny.en, 2 threads")
    print(f"real-time factor  direct pywhispercpp: {d:.3f}   HTTP API: {a:.3f}")
    print(f"ratio API / direct: {a / d:.3f}   (target <= 1.05)")


if __name__ == "__main__":
    asyncio.run(main())
