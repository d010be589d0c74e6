"""A vision-language model (GGUF + mmproj) built here with random weights (tests/tiny_vlm.py):
it loads through llama.cpp's multimodal path, describes an image, and takes images in chat on
both APIs and in a moderation check; remote image URLs are refused (the box is offline)."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from appliance_llama.vision import LlamaVisionModel
from PIL import Image

from appliance import (
    ChatModel,
    ChatRequest,
    ImageDescriber,
    ImageInput,
    ModelInfo,
    SamplingOptions,
    hookimpl,
)
from tests.fixtures import ClientFactory, bearer, new_token
from tests.tiny_vlm import build_pair


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_pair(tmp_path_factory.mktemp("tiny-vlm"))


def vision_model(pair: tuple[Path, Path]) -> LlamaVisionModel:
    info = ModelInfo(
        name="tiny-vlm",
        family="llama",
        parameters="3M",
        context_length=1024,
        capabilities=("chat", "vision"),
    )
    return LlamaVisionModel(info, lambda: pair, 1024, 2)


def test_the_pair_loads_describes_and_chats_about_an_image(pair: tuple[Path, Path]) -> None:
    model = vision_model(pair)
    model.load()
    try:
        image = ImageInput(png_bytes(), 40, 30, "red.png")
        described = model.describe(image, "Describe the image.", max_tokens=8)
        assert isinstance(described, str) and described.strip()
        url = "data:image/png;base64," + base64.b64encode(image.png).decode()
        request = ChatRequest(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": "What is this?"},
                    ],
                }
            ],
            sampling=SamplingOptions(max_tokens=8, temperature=0.0),
        )
        chunks = list(model.chat(request, threading.Event()))
        assert chunks[-1].finish_reason in ("stop", "length") and chunks[-1].usage is not None
        assert chunks[-1].usage.prompt_tokens > 4  # the image's tokens are in the prompt
    finally:
        model.unload()


class TinyVision:
    """A plugin serving the tiny pair as a chat model and as the describer."""

    def __init__(self, model: LlamaVisionModel) -> None:
        self.model = model

    @hookimpl
    def register_chat_models(self, register: Callable[[ChatModel], None], **_: Any) -> None:
        register(self.model)

    @hookimpl
    def register_image_describers(
        self, register: Callable[[ImageDescriber], None], **_: Any
    ) -> None:
        register(self.model)


async def test_images_reach_the_model_on_both_apis_and_in_moderation(
    make_client: ClientFactory, pair: tuple[Path, Path]
) -> None:
    client = await make_client(
        extra_plugins=(("tinyvision", TinyVision(vision_model(pair))),),
        load_plugins=("echo", "moderation"),
    )
    headers = bearer(new_token(client, "admin"))
    b64 = base64.b64encode(png_bytes()).decode()
    image_part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}}
    ask = [{"role": "user", "content": [image_part, {"type": "text", "text": "What is it?"}]}]
    body = {"model": "tiny-vlm", "messages": ask, "max_tokens": 6, "temperature": 0}
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert isinstance(answer["choices"][0]["message"]["content"], str)
    assert answer["usage"]["prompt_tokens"] > 4

    ollama = {
        "model": "tiny-vlm",
        "messages": [{"role": "user", "content": "What is it?", "images": [b64]}],
        "stream": False,
        "options": {"num_predict": 6, "temperature": 0},
    }
    response = await client.post("/api/chat", json=ollama, headers=headers)
    assert response.status == 200, await response.text()
    assert (await response.json())["done"] is True
    generate = {"model": "tiny-vlm", "prompt": "What is it?", "images": [b64], "stream": False}
    generate["options"] = {"num_predict": 6, "temperature": 0}
    response = await client.post("/api/generate", json=generate, headers=headers)
    assert response.status == 200, await response.text()
    assert (await response.json())["prompt_eval_count"] > 4  # the image's tokens were read

    remote = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    body["messages"] = [{"role": "user", "content": [remote]}]
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status == 400
    assert "offline" in (await response.json())["error"]["message"]
    body.update(model="echo", messages=ask)
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status == 400 and "echo" in (await response.json())["error"]["message"]

    form = aiohttp.FormData()
    form.add_field("file", png_bytes(), filename="red.png")
    response = await client.post("/appliance/moderation/checks", data=form, headers=headers)
    assert response.status == 200, await response.text()
    [check] = (await response.json())["data"]
    assert check["status"] == "done" and check["description"].strip()
