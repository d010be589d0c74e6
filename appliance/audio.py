"""Decode uploaded audio to 16 kHz mono float32: WAV/FLAC/OGG/Opus/MP3 through libsndfile
(the ``soundfile`` wheel bundles it), other containers (M4A, ...) through ffmpeg when present;
resampling with ``soxr``. Every failure is a 400 that says what was wrong."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import soundfile
import soxr

from appliance.errors import BadRequest

RATE = 16000


def _from_ffmpeg(data: bytes) -> np.ndarray:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise BadRequest(
            "unsupported audio format; send WAV, FLAC, OGG/Opus or MP3 "
            "(M4A and others need ffmpeg on the box)",
            param="file",
        )
    done = subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            "pipe:0",
            "-f",
            "f32le",
            "-ac",
            "1",
            "-ar",
            str(RATE),
            "pipe:1",
        ],
        input=data,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout:
        raise BadRequest(
            f"the audio could not be decoded: {done.stderr.decode()[-200:]}", param="file"
        )
    return np.frombuffer(done.stdout, dtype=np.float32)


def decode_audio(data: bytes, max_seconds: float | None = None) -> np.ndarray:
    """16 kHz mono float32 samples in [-1, 1]."""
    if not data:
        raise BadRequest("the audio file is empty", param="file")
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        samples = _from_ffmpeg(data)[:, None]
        rate = RATE
    if samples.size == 0:
        raise BadRequest("the audio file holds no samples", param="file")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != RATE:
        mono = soxr.resample(mono, rate, RATE)
    duration = len(mono) / RATE
    if max_seconds is not None and duration > max_seconds:
        raise BadRequest(
            f"the audio is {duration:.0f} s long; the limit is {max_seconds:.0f} s", param="file"
        )
    return np.ascontiguousarray(mono, dtype=np.float32)
