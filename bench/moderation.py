"""Moderation's cost: images per second checked through the API (upload, record, classifier,
verdict; `appliance serve` in its own process, a policy without questions so that only the
image stages run) over the open_nsfw classifier called directly on the same images, in one run.
Run: .venv/bin/python -m bench.moderation
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
from appliance_moderation.classifier import OpenNsfwClassifier
from appliance_moderation.images import decode
from PIL import Image

from appliance import ModelInfo
from appliance.models.catalog import load_catalog
from appliance.models.store import ModelStore
from bench.common import MODELS_DIR, median, serve_process

IMAGES = 24
ROUNDS = 3


def photos() -> list[bytes]:
    rng = np.random.default_rng(3)
    out = []
    for _ in range(IMAGES):
        pixels = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def direct(images: list[bytes]) -> float:
    catalog = load_catalog()
    model = catalog.get("open-nsfw")
    store = ModelStore(MODELS_DIR, catalog)
    info = ModelInfo(name=model.id, family=model.family, parameters="", context_length=0)
    classifier = OpenNsfwClassifier(info, lambda: store.verified_path(model), 2)
    classifier.load()
    classifier.classify([decode(images[0])])  # warm up
    started = time.perf_counter()
    for data in images:
        classifier.classify([decode(data)])
    return len(images) / (time.perf_counter() - started)


async def through_api(session: aiohttp.ClientSession, url: str, images: list[bytes]) -> float:
    started = time.perf_counter()
    for data in images:
        form = aiohttp.FormData()
        form.add_field("file", data, filename="photo.jpg")
        async with session.post(url + "/appliance/moderation/checks", data=form) as response:
            assert response.status == 200, await response.text()
            [check] = (await response.json())["data"]
            assert check["status"] == "done" and check["scores"], check
    return len(images) / (time.perf_counter() - started)


async def main() -> None:
    images = photos()
    local, served = [], []
    env = {"APPLIANCE_CALIBRATE_AT_START": "false"}
    with tempfile.TemporaryDirectory() as home:
        async with (
            serve_process(Path(home), "moderation", env) as url,
            aiohttp.ClientSession() as session,
        ):
            await through_api(session, url, images[:1])  # load the classifier
            for _ in range(ROUNDS):
                local.append(direct(images))
                served.append(await through_api(session, url, images))
    print(f"{IMAGES} photos (640 x 480 JPEG), {ROUNDS} rounds (median images/s)")
    print(f"  classifier called directly   {median(local):6.1f}")
    print(f"  through the API              {median(served):6.1f}")
    print(f"  API / direct                 {median(served) / median(local):6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
